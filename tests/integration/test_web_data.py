"""get_web_data against a real HTTP server on loopback that fails as told (issue 16)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from nowcastkit.errors import WorkerError
from nowcastkit.web_data import retry_waits
from nowcastkit.worker import get_web_data

BODY = bytes(range(256)) * 4096  # 1 MiB
FAST = {"wait_exponential_multiplier": 2, "first_wait": 0.05, "wait_exponential_max": 0.5}


class FlakyServer(ThreadingHTTPServer):
    """Answers each GET with the next of *script* (then 200 and BODY): an HTTP status,
    ``drop`` (hang up before answering) or ``half`` (hang up half way through the body)."""

    daemon_threads = True

    def __init__(self, script: list) -> None:
        self.script = list(script)
        self.gets: list[float] = []
        self.hold = threading.Event()  # a ``pause`` step waits on it half way through
        self.hold.set()
        super().__init__(("127.0.0.1", 0), _Flaky)

    def url(self, path: str = "/forcing/hrdps_2026-12-02.grib2") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _Flaky(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server = self.server
        server.gets.append(time.monotonic())
        step = server.script.pop(0) if server.script else 200
        if step == "drop":
            self.close_connection = True
            return
        if isinstance(step, int) and step != 200:
            self.send_error(step)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        half = len(BODY) // 2
        self.wfile.write(BODY[:half])
        self.wfile.flush()
        if step == "half":
            self.close_connection = True
            return
        if step == "pause":
            server.hold.wait(10)
        self.wfile.write(BODY[half:])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serve():
    servers = []

    def start(script: list) -> FlakyServer:
        server = FlakyServer(script)
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.hold.set()
        server.shutdown()
        server.server_close()


def wait_for(check, what, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"no {what} after {timeout}s"
        time.sleep(0.01)
    return result


def test_a_503_then_a_dropped_connection_are_waited_out_and_the_third_get_answers(serve):
    server = serve([503, "drop"])
    with requests.Session() as session:
        body = get_web_data(server.url(), "download_weather", session=session, **FAST)
    assert body == BODY
    assert len(server.gets) == 3
    gaps = [b - a for a, b in zip(server.gets, server.gets[1:], strict=False)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1, gaps  # the back-off doubles


def test_a_server_that_always_fails_is_one_line_naming_the_url_after_the_time_limit(serve):
    server = serve([503] * 20)
    started = time.monotonic()
    with pytest.raises(WorkerError) as caught:
        get_web_data(server.url(), "download_weather", **FAST)
    elapsed = time.monotonic() - started
    # waits 0.05, 0.1, 0.2 fit in 0.5 s; a fourth (0.4) would not: 4 GETs
    assert len(server.gets) == 4
    assert 0.35 <= elapsed < 3, elapsed
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith(f"download from {server.url()} failed 4 times over 0.")
    assert line.endswith("s; last: HTTP 503 Service Unavailable")


def test_a_refused_connection_is_retried_then_named(serve):

    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/f"
        with pytest.raises(WorkerError, match=r"failed 4 times .* last: ConnectionError: "):
            get_web_data(url, "download_weather", **FAST)


def test_a_403_is_not_waited_for(serve):
    server = serve([403])
    with pytest.raises(WorkerError) as caught:
        get_web_data(server.url(), "download_weather", **FAST)
    assert str(caught.value) == f"download from {server.url()} refused: HTTP 403 Forbidden"
    assert len(server.gets) == 1


def test_a_file_not_published_yet_is_waited_for(serve):
    server = serve([404, 404])
    assert get_web_data(server.url(), "download_weather", **FAST) == BODY
    assert len(server.gets) == 3


def test_to_a_file_it_streams_into_a_temporary_file_and_renames_it_when_whole(serve, tmp_path):
    server = serve(["pause"])
    server.hold.clear()
    dest = tmp_path / "hrdps.grib2"
    dest.write_bytes(b"yesterday's")
    done = []
    thread = threading.Thread(
        target=lambda: done.append(get_web_data(server.url(), "dw", filepath=dest, **FAST))
    )
    thread.start()
    # half the body is on disk in a temporary file beside it; a reader still sees the old file
    part = wait_for(
        lambda: [p for p in tmp_path.iterdir() if p.suffix == ".tmp" and p.stat().st_size],
        "temporary file with data",
    )[0]
    assert part.name.startswith(".hrdps.grib2.")
    assert dest.read_bytes() == b"yesterday's"
    server.hold.set()
    thread.join(10)
    assert done == [None]
    assert dest.read_bytes() == BODY
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hrdps.grib2"]


def test_a_body_cut_short_is_retried_and_never_left_in_the_file(serve, tmp_path):
    server = serve(["half"])
    dest = tmp_path / "f.nc"
    get_web_data(server.url(), "dw", filepath=str(dest), **FAST)
    assert dest.read_bytes() == BODY
    assert len(server.gets) == 2

    server.script = ["half"] * 20
    dest.write_bytes(b"old")
    with pytest.raises(WorkerError, match="last: ChunkedEncodingError"):
        get_web_data(server.url(), "dw", filepath=dest, **FAST)
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.nc"]


def test_the_reference_designs_defaults_wait_2_4_8_up_to_256_within_an_hour():
    waits = list(retry_waits(2, 2, 256, 3600))
    assert waits[:8] == [2, 4, 8, 16, 32, 64, 128, 256]
    assert set(waits[8:]) == {256}
    assert sum(waits) <= 3600 < sum(waits) + 256


@pytest.mark.parametrize(
    ("kwargs", "line"),
    [
        (
            {"wait_exponential_multiplier": 0.5},
            "wait_exponential_multiplier: got 0.5, expected >= 1",
        ),
        ({"wait_retry_max": 0}, "wait_retry_max: got 0, expected seconds > 0"),
        ({"first_wait": -1}, "first_wait: got -1, expected seconds > 0"),
    ],
)
def test_a_bad_wait_is_one_line_naming_it(kwargs, line):
    with pytest.raises(WorkerError) as caught:
        get_web_data("http://127.0.0.1:9/", "dw", **kwargs)
    assert str(caught.value) == f"get_web_data: {line}"


def test_a_worker_that_imports_nowcastkit_worker_does_not_load_requests():
    code = "import sys, nowcastkit.worker; print('requests' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
