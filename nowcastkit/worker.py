"""The worker side: run one job, tell the manager how it went, exit.

    from nowcastkit import NowcastWorker, WorkerError

    def main():
        worker = NowcastWorker("sleep", description=__doc__)
        worker.init_cli()
        worker.cli.add_argument("--sleep-time", type=int, default=5)
        worker.run(sleep, success, failure)

``sleep(parsed_args, config, tell_manager)`` returns the checklist payload;
``success(parsed_args)`` and ``failure(parsed_args)`` return message types.
Raising :class:`WorkerError` sends ``failure``; any other exception sends
``crash`` with the traceback in the log.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from nowcastkit import logs
from nowcastkit.config import SECTIONS, Config
from nowcastkit.errors import ConfigError, MessageError, NowcastkitError, WorkerError
from nowcastkit.message import Message, max_message_size
from nowcastkit.worker_cli import CommandLineInterface

__all__ = ["REPORT_FILE_ENV", "RUN_ID_ENV", "NowcastWorker"]

#: Set by the manager in a worker it launches; the worker names its run in each message.
RUN_ID_ENV = "NOWCASTKIT_RUN_ID"
#: Set by the launcher for a run that cannot reach the broker (a Slurm host with
#: ``report: file``): its final message is left in this file for the manager to fetch.
REPORT_FILE_ENV = "NOWCASTKIT_REPORT_FILE"

DEFAULT_REPLY_TIMEOUT = 30.0
DEFAULT_RESEND_FOR = 600.0
_MAX_WAIT = 60.0
_HELLO_TIMEOUT = 2.0
_OK_REPLIES = frozenset(("ack", "checklist cleared"))


class NowcastWorker:
    """One worker process: parse the command line, do the work, report to the manager.

    A plain class rather than attrs: every worker imports this module, and attrs
    would more than double nowcastkit's share of a worker's start-up.
    """

    def __init__(
        self,
        name: str,
        description: str = "",
        package: str = "workers",
        cli: CommandLineInterface | None = None,
        config: Config | None = None,
    ) -> None:
        self.name, self.description, self.package = name, description, package
        self.cli = cli
        self.config = config if config is not None else Config()
        # Workers log under their own name, as the reference design's workers do.
        self.logger = logging.getLogger(name)
        self._parsed_args: Any = None
        self._debug = False
        self._context: Any = None
        self._socket: Any = None
        self._monitor: Any = None
        self._handshakes: Any = None
        self._key = self._server_key = ""
        self._endpoint = ""
        self._started = time.monotonic()
        self._run_id: str | None = None

    def __repr__(self) -> str:
        return f"NowcastWorker(name={self.name!r}, package={self.package!r})"

    def init_cli(self) -> None:
        """The worker's command line: the config file and ``--debug``; add options after."""
        self.cli = CommandLineInterface(self.name, self.package, self.description)
        self.cli.build_parser()
        self.cli.add_argument(
            "--debug",
            action="store_true",
            help="log to the console and do not send messages to the manager",
        )

    def run(
        self,
        worker_func: Callable,
        success: Callable,
        failure: Callable,
        argv: list[str] | None = None,
    ) -> None:
        """Do the work and report it; exit non-zero when the manager's answer is missing or bad."""
        if self.cli is None:
            self.init_cli()
        self._parsed_args = self.cli.parse_args(argv)
        # A command line built without init_cli has no --debug.
        self._debug = bool(getattr(self._parsed_args, "debug", False))
        try:
            self.config.load(self._parsed_args.config_file, SECTIONS)
            if self._debug:
                logs.configure_console()
            else:
                logs.configure(self.config, process=self.name, run=os.environ.get(RUN_ID_ENV))
        except ConfigError as err:
            sys.stderr.write(f"{self.name}: {err}\n")  # logging is not set up yet
            raise SystemExit(2) from None
        self.logger.info("running in process %d", os.getpid())
        self.logger.info("read config from %s", self.config.file)
        try:
            self._connect()
            reply = self._report(*self._do_work(worker_func, success, failure))
        except NowcastkitError as err:
            self.logger.critical("%s", err)
            raise SystemExit(1) from None
        finally:
            self._disconnect()
        self.logger.debug("shutting down")
        if reply is not None and reply.type not in _OK_REPLIES:
            raise SystemExit(1)

    def tell_manager(self, msg_type: str, payload: Any = None) -> Message | None:
        """Send a message of a type registered for this worker; return the manager's reply."""
        msg, words = self._prepare(msg_type, payload)
        if os.environ.get(REPORT_FILE_ENV):
            raise MessageError(f"{REPORT_FILE_ENV} is set: this run cannot reach the manager "
                               f"and sends only its final message, by file")  # fmt: skip
        if self._debug:
            self.logger.debug("debug mode: would have sent message: (%s) %s", msg_type, words)
            return None
        reply = self._exchange(msg, words)
        reply_words = self.config["message registry"].get("manager", {}).get(reply.type, "")
        level = logging.DEBUG if reply.type in _OK_REPLIES else logging.ERROR
        self.logger.log(
            level, "received message from %s: (%s) %s", reply.source, reply.type, reply_words
        )
        return reply

    def _do_work(self, worker_func, success, failure) -> tuple[str, Any]:
        try:
            checklist = worker_func(self._parsed_args, self.config, self.tell_manager)
            return success(self._parsed_args), checklist
        except WorkerError as err:
            if str(err):
                self.logger.error("%s", err)
            return failure(self._parsed_args), None
        except Exception:
            self.logger.critical("unhandled exception:", exc_info=True)
            return "crash", None

    def _prepare(self, msg_type: str, payload: Any) -> tuple[Message, str]:
        """The message to send, checked: registered type, plain payload, not too large."""
        words = self._registered_types().get(msg_type)
        if words is None or msg_type == "checklist key":
            raise MessageError(
                f"{self.config.file}: message registry.workers.{self.name}: "
                f"message type {msg_type!r} is not registered"
            )
        msg = self._message(msg_type, payload)
        size = len(msg.serialize().encode())
        if size > (limit := max_message_size(self.config)):
            raise MessageError(
                f"{self.config.file}: zmq.max message size: a {msg_type!r} message of {size} "
                f"bytes is over the {limit} bytes the broker accepts"
            )
        return msg, words

    def _report(self, msg_type: str, checklist: Any) -> Message | None:
        """Send the final message; one that cannot be sent becomes a crash report."""
        self._registered_types()  # an unregistered worker cannot send a crash either
        try:
            self._prepare(msg_type, checklist)
        except MessageError as err:
            if msg_type == "crash":
                raise
            self.logger.critical("%s", err)
            msg_type, checklist = "crash", None
        path = os.environ.get(REPORT_FILE_ENV)
        if path and not self._debug:
            self._leave(path, *self._prepare(msg_type, checklist))
            return None
        return self.tell_manager(msg_type, checklist)

    def _leave(self, path: str, msg: Message, words: str) -> None:
        """Write the final message to *path* atomically, for the manager to fetch."""
        new = f"{path}.new"
        try:
            with open(new, "w") as f:
                f.write(msg.serialize())
                f.flush()
                os.fsync(f.fileno())
            os.replace(new, path)
        except OSError as err:
            raise MessageError(f"{REPORT_FILE_ENV}: cannot write {path}: {err}") from None
        self.logger.debug("left message in %s: (%s) %s", path, msg.type, words)

    def _message(self, msg_type: str, payload: Any = None) -> Message:
        return Message(
            self.name, msg_type, payload, id=os.urandom(16).hex(), host=os.uname().nodename,
            pid=os.getpid(), run=os.environ.get(RUN_ID_ENV) or self._run_id,
        )  # fmt: skip

    def _say_hello(self) -> None:
        """Tell the manager about a run it did not launch, so it can watch this process."""
        wait = min(_HELLO_TIMEOUT, self.config["zmq"].get("reply timeout", _HELLO_TIMEOUT))
        self._socket.send_string(self._message("hello").serialize())
        answer, _again = self._wait(wait)
        if answer is not None:
            reply = Message.deserialize(answer)
            if isinstance(reply.payload, dict) and isinstance(reply.payload.get("run"), str):
                self._run_id = reply.payload["run"]
                logs.name_run(self._run_id)
        else:
            self.logger.warning("manager did not answer hello within %gs", wait)
            self._close_socket()

    def _registered_types(self) -> dict:
        workers = self.config["message registry"]["workers"]
        if self.name not in workers:
            raise MessageError(
                f"{self.config.file}: message registry.workers: worker {self.name!r} "
                "is not registered"
            )
        return workers[self.name]

    def _connect(self) -> None:
        if self._debug:
            return
        if os.environ.get(REPORT_FILE_ENV):
            self.logger.info("reporting by file: %s", os.environ[REPORT_FILE_ENV])
            return
        import zmq

        from nowcastkit.endpoints import broker_endpoint, is_ipc

        zmq_config = self.config["zmq"]
        self._context = zmq.Context()
        self._endpoint = broker_endpoint(self.config, "workers")
        self._socket = self._new_socket()
        if is_ipc(self.config):
            self.logger.info("connected to %s", self._endpoint)
        else:
            self.logger.info(
                "connected to %s port %s", zmq_config["host"], zmq_config["ports"]["workers"]
            )
        if not os.environ.get(RUN_ID_ENV):
            self._say_hello()

    def _new_socket(self):
        """A REQ socket to the broker, with this host's key pair under CURVE, and its monitor."""
        import zmq

        from nowcastkit import handshake, security

        sock = self._context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        if security.is_curve(self.config):
            from nowcastkit.keys import fingerprint

            config, name = self.config, security.client_key_name(self.config, "workers")
            public = security.curve_client(sock, config, "workers")
            path = security.key_file(config, name, secret=True)
            self._key = f"key {fingerprint(public)} from {path}"
            self._server_key = str(security.key_file(config, config["zmq"]["curve"]["broker"],
                                                     secret=False))  # fmt: skip
        self._monitor = sock.get_monitor_socket(handshake.EVENTS)
        self._handshakes = handshake.Handshakes()
        sock.connect(self._endpoint)
        return sock

    def _wait(self, seconds: float) -> tuple[bytes | None, bool]:
        """The reply within *seconds*, or None; True when the socket reconnected meanwhile.

        A broker restarted while this worker waited has lost the request: the socket
        reconnects within a second, and the request goes again at once, not after the
        whole reply timeout. A refused handshake ends the worker at once, with why.
        """
        import zmq

        from nowcastkit import handshake

        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready = dict(poller.poll(left * 1000 + 1))
            if self._socket in ready:
                return self._socket.recv(), False
            if self._monitor in ready:
                verdict = self._handshakes.see(*handshake.monitor_event(self._monitor))
                if verdict == handshake.RECONNECTED:
                    return None, True
                if verdict is not None:
                    who = "this worker's key"
                    line = handshake.refusal(
                        verdict, self._endpoint, who, self._key, self._server_key
                    )
                    raise MessageError(line)
        return None, False

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.disable_monitor()
            self._monitor.close(linger=0)
            self._socket.close(linger=0)
            self._socket = self._monitor = None

    def _exchange(self, msg: Message, words: str) -> Message:
        """Send and wait for the reply, resending the same message on a fresh socket.

        Waits grow from ``zmq.reply timeout`` (doubling, at most a minute) until
        ``zmq.resend for`` seconds have passed or ``zmq.reply attempts`` sends
        were made; the manager answers a resent message without handling it twice.
        """
        zmq_config = self.config["zmq"]
        wait = float(zmq_config.get("reply timeout", DEFAULT_REPLY_TIMEOUT))
        attempts = zmq_config.get("reply attempts")
        give_up = time.monotonic() + zmq_config.get("resend for", DEFAULT_RESEND_FOR)
        text, attempt, again = msg.serialize(), 0, False
        while True:
            attempt += 0 if again else 1
            if self._socket is None:
                self._socket = self._new_socket()
            self._socket.send_string(text)
            if attempt == 1 and not again:
                self.logger.debug("sent message: (%s) %s", msg.type, words)
            answer, again = self._wait(min(wait, max(give_up - time.monotonic(), 0.1)))
            if answer is not None:
                return Message.deserialize(answer)
            self._close_socket()
            if again and time.monotonic() < give_up:
                self.logger.warning("reconnected to the broker; resending at once")
                continue
            if time.monotonic() >= give_up or attempt == attempts:
                raise MessageError(
                    f"no reply from manager via {self._endpoint} after {attempt} sends over "
                    f"{time.monotonic() - self._started:.0f}s; is the message broker running?"
                )
            self.logger.warning("no reply from manager within %gs; resending (%d)", wait, attempt)
            wait = min(wait * 2, _MAX_WAIT)

    def _disconnect(self) -> None:
        self._close_socket()
        if self._context is not None:
            self._context.term()
            self._context = None


def __getattr__(name: str) -> Any:
    # NextWorker lives in nowcastkit.next_worker; this keeps the reference design's
    # import path (``from ....worker import NextWorker``) without loading it in workers.
    if name == "NextWorker":
        from nowcastkit.next_worker import NextWorker

        return NextWorker
    # get_web_data imports requests, which a worker that downloads nothing need not load.
    if name == "get_web_data":
        from nowcastkit.web_data import get_web_data

        return get_web_data
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
