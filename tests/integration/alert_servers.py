"""Real servers on loopback for the alert channels: a webhook that records, one that never
answers, and an SMTP server (aiosmtpd) with STARTTLS and login."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import attrs
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from conftest import child_env

SMTP_USER, SMTP_PASSWORD = "nowcast", "s3cret-smtp-passw0rd"


@attrs.define(eq=False)
class Post:
    path: str
    headers: dict
    body: dict


class RecordingWebhook(ThreadingHTTPServer):
    """Records each POST, and each GET's path (a heartbeat's ping); answers *statuses* in
    turn (then 200 for ever)."""

    daemon_threads = True

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.posts: list[Post] = []
        self.gets: list[str] = []
        self.statuses = list(statuses or [])
        super().__init__(("127.0.0.1", 0), _Recorder)

    def url(self, path: str = "/services/T000/B000/XXXXsecretXXXX") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _Recorder(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server = self.server
        server.posts.append(Post(self.path, dict(self.headers), json.loads(body)))
        self._answer()

    def do_GET(self) -> None:
        self.server.gets.append(self.path)
        self._answer()

    def _answer(self) -> None:
        server = self.server
        status = server.statuses.pop(0) if server.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:  # not on the test's stderr
        pass


@attrs.define(eq=False)
class SilentServer:
    """Accepts every connection and never reads from it nor answers."""

    sock: socket.socket
    accepted: list[tuple[float, socket.socket]] = attrs.field(factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/hooks/silent-secret"

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed: the test is over
                return
            self.accepted.append((time.monotonic(), conn))

    def close(self) -> None:
        self.sock.close()
        for _, conn in self.accepted:
            conn.close()


class _Handler:
    def __init__(self) -> None:
        self.envelopes: list = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


def _authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = auth_data.login == SMTP_USER.encode() and auth_data.password == SMTP_PASSWORD.encode()
    return AuthResult(success=ok, handled=False)  # False: the server answers 535 itself


class _Controller(Controller):
    """aiosmtpd's controller on the port the kernel picked: its check connects to it."""

    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@attrs.define(eq=False)
class SmtpServer:
    controller: Controller
    handler: _Handler
    ca_file: Path

    @property
    def port(self) -> int:
        return self.controller.port

    def messages(self) -> list:
        return self.handler.envelopes


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by openssl."""
    cert, key = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def webhook():
    server = RecordingWebhook()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent():
    server = SilentServer(socket.create_server(("127.0.0.1", 0)))
    threading.Thread(target=server.serve, daemon=True).start()
    yield server
    server.close()


def _smtp_server(folder: Path, implicit_tls: bool):
    """aiosmtpd on loopback with a certificate of its own and login, started; then stopped."""
    cert, key = self_signed(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    # aiosmtpd's auth_require_tls counts only STARTTLS; with implicit TLS all is encrypted.
    tls = ({"ssl_context": context, "auth_require_tls": False} if implicit_tls
           else {"tls_context": context, "require_starttls": True})  # fmt: skip
    handler = _Handler()
    controller = _Controller(handler, hostname="127.0.0.1", port=0, auth_required=True,
                             authenticator=_authenticate, **tls)  # fmt: skip
    controller.start()
    yield SmtpServer(controller, handler, cert)
    controller.stop()


@pytest.fixture
def smtp(tmp_path: Path):
    """An SMTP server on loopback that takes mail only after STARTTLS and login."""
    yield from _smtp_server(tmp_path, implicit_tls=False)


@pytest.fixture
def smtps(tmp_path: Path):
    """An SMTP server on loopback speaking TLS from the first byte (SMTPS), with login."""
    yield from _smtp_server(tmp_path, implicit_tls=True)


@pytest.fixture
def refused_port():
    """A port bound and not listening: a connection to it is refused, and no one takes it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def assert_rejected(system, problem: str) -> None:
    """``validate`` says *problem* first (exit 1), and the manager, at start, only it (exit 2)."""

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", *argv, str(system.config_path)], capture_output=True,
            text=True, timeout=30, cwd=system.folder, env=child_env(),
        )  # fmt: skip

    validate = run("nowcastkit.cli", "validate")
    assert validate.returncode == 1
    assert validate.stdout.splitlines()[0] == f"{system.config_path}: {problem}"
    manager = run("nowcastkit.manager")
    assert manager.returncode == 2
    assert manager.stderr == f"manager: {system.config_path}: {problem}\n"
