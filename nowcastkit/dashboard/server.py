"""The dashboard process: Tornado serving the pages, read-only, and one live stream.

Every handler answers GET and HEAD only (anything else is a 405, any path); the
store reads, the control socket and circus are asked in a worker thread, never on
the event loop. The Today page's stream is fed by :class:`~.feed.Feed`: after each
event (and every ``dashboard.refresh`` seconds) the server asks the manager and
circus again and sends the page's sections, rendered, to every open page.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import json
import logging
import os
import signal
import time
from pathlib import Path

import attrs
import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.web

from nowcastkit import store as st
from nowcastkit.cli.history import open_history
from nowcastkit.cli.status import ask_circus, circus_endpoint
from nowcastkit.config import Config
from nowcastkit.control import monitor_endpoint
from nowcastkit.dashboard import pages, views
from nowcastkit.dashboard.feed import Feed
from nowcastkit.dashboard.settings import Settings, is_loopback, settings
from nowcastkit.errors import ConfigError
from nowcastkit.lifecycle import STOP, SignalWatch, reload_config

__all__ = ["Live", "make_app", "serve"]

log = logging.getLogger("dashboard")

STATIC = Path(__file__).parent / "static"
#: Seconds to wait for the manager's and circus's answers.
ASK_TIMEOUT = 1.0
#: Seconds between looks at a followed log, and at the store for the run's end.
LOG_POLL = 0.25
_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'")  # fmt: skip


@attrs.define(eq=False)
class Live:
    """The latest manager and circus answers, refreshed after events; owned by the server."""

    config: Config
    feed: Feed
    manager: dict = attrs.field(factory=lambda: {"ok": False, "error": "not asked yet"})
    circus: dict | None = None
    _refreshing: asyncio.Task | None = None
    _again: bool = False

    def ask_manager(self) -> None:
        """Ask the manager (blocking: run it in a thread), after each event."""
        self.manager = views.ask_manager(self.config, ASK_TIMEOUT)

    def ask_circus(self) -> None:
        """Ask circus (blocking), now and then: a circus not running costs a timeout."""
        self.circus = ask_circus(circus_endpoint(self.config), ASK_TIMEOUT)

    def today(self) -> dict:
        return views.today(self.config, self.manager, self.circus, time.time())

    def refresh_soon(self) -> None:
        """Refresh and send the Today sections; events during a refresh make one more."""
        if self._refreshing is not None and not self._refreshing.done():
            self._again = True
            return
        self._refreshing = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._again = False
            try:
                await loop.run_in_executor(None, self.ask_manager)
                view = await loop.run_in_executor(None, self.today)
            except Exception:  # a store being replaced, say: the next event tries again
                log.exception("today: refresh failed")
                return
            sections = pages.today_sections(view, self.feed.lines())
            self.feed.send("today", {"sections": sections})
            if not self._again:
                return


class _Handler(tornado.web.RequestHandler):
    """Read-only by construction: GET and HEAD, nothing else, on every path."""

    SUPPORTED_METHODS = ("GET", "HEAD")

    def initialize(self, live: Live | None = None) -> None:
        self.live = live

    @property
    def config(self) -> Config:
        return self.live.config

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", _CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("Cache-Control", "no-store")

    def wants_json(self) -> bool:
        return self.get_query_argument("format", "") == "json"

    def params(self) -> dict[str, str]:
        return {name: self.get_query_argument(name) for name in self.request.query_arguments}

    async def blocking(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def answer(self, view: dict, html) -> None:
        if self.wants_json():
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(view, default=str))
        else:
            self.finish(html(view))

    async def head(self, *args: str) -> None:
        await self.get(*args)

    async def get(self, *args: str) -> None:
        raise tornado.web.HTTPError(404, "no such page")

    def write_error(self, status_code: int, **kwargs) -> None:
        error = kwargs.get("exc_info", (None, None))[1]
        text = getattr(error, "log_message", None) or self._reason
        if self.wants_json():
            self.finish({"error": text, "status": status_code})
        else:
            self.finish(pages.error_page(status_code, self._reason, text))


def _bad_query(method):
    @functools.wraps(method)
    async def wrapper(self, *args):
        try:
            await method(self, *args)
        except views.BadQuery as err:
            raise tornado.web.HTTPError(400, str(err)) from None

    return wrapper


class _Today(_Handler):
    async def get(self) -> None:
        view = await self.blocking(self.live.today)
        self.answer({**view, "events": self.live.feed.lines()},
                    lambda v: pages.today_page(v, v["events"]))  # fmt: skip


class _Runs(_Handler):
    @_bad_query
    async def get(self) -> None:
        query = views.run_query(self.params())
        self.answer(await self.blocking(views.runs, self.config, query), pages.runs_page)


class _Run(_Handler):
    async def get(self, run_id: str) -> None:
        view = await self.blocking(views.run, self.config, run_id)
        if view is None:
            raise tornado.web.HTTPError(404, f"no run {run_id} in the store")
        self.answer(view, pages.run_page)


class _Timeline(_Handler):
    @_bad_query
    async def get(self) -> None:
        text = self.get_query_argument("date", "")
        day = views.parse_day(text) if text else dt.date.today()
        view = await self.blocking(views.timeline, self.config, day, time.time())
        self.answer(view, pages.timeline_page)


class _Checklist(_Handler):
    async def get(self) -> None:
        view = await self.blocking(views.checklist, self.config, ASK_TIMEOUT)
        self.answer(view, pages.checklist_page)


class _Stream(_Handler):
    """An EventSource stream; subclasses say what goes on it."""

    def start_stream(self) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("X-Accel-Buffering", "no")

    async def send(self, text: str) -> bool:
        """Write *text* to the stream; False once the browser has gone."""
        try:
            self.write(text)
            await self.flush()
        except tornado.iostream.StreamClosedError:
            return False
        return True


class _TodayStream(_Stream):
    async def get(self) -> None:
        self.start_stream()
        if self.request.method == "HEAD":
            return
        feed = self.live.feed
        queue = feed.listen()
        try:
            view = await self.blocking(self.live.today)
            sections = pages.today_sections(view, feed.lines())
            text = f"event: today\ndata: {json.dumps({'sections': sections}, default=str)}\n\n"
            while text is not None and await self.send(text):
                text = await queue.get()
        finally:
            feed.forget(queue)


class _LogStream(_Stream):
    """What a live run's log gains, from ``?offset=N``, until the store says it has ended."""

    async def get(self, run_id: str) -> None:
        offset = self.get_query_argument("offset", "0")
        if not offset.isdigit():
            raise tornado.web.HTTPError(400, f"offset: got {offset!r}, expected bytes from 0")
        view = await self.blocking(views.run, self.config, run_id)
        if view is None:
            raise tornado.web.HTTPError(404, f"no run {run_id} in the store")
        self.start_stream()
        if self.request.method == "HEAD":
            return
        position, path = int(offset), view["log"]["path"]
        while True:
            ended = await self.blocking(_ended, self.config, run_id)
            chunk, position = await self.blocking(_read_from, path, position)
            if chunk and not await self.send(_event("log", {"text": chunk})):
                return
            if ended is not None:
                await self.send(_event("end", {"outcome": ended, "kind": pages.kind(ended)}))
                return
            await asyncio.sleep(LOG_POLL)


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def _ended(config: Config, run_id: str) -> str | None:
    store = open_history(config)
    if store is None:
        return None
    try:
        return st.ended_as(store, run_id)
    finally:
        store.conn.close()


def _read_from(path: str | None, position: int) -> tuple[str, int]:
    if not path:
        return "", position
    try:
        with open(path, "rb") as file:
            if os.fstat(file.fileno()).st_size < position:  # made anew: from its start
                position = 0
            file.seek(position)
            data = file.read(1 << 20)
    except FileNotFoundError:
        return "", position
    return data.decode(errors="replace"), position + len(data)


class _Static(tornado.web.StaticFileHandler):
    SUPPORTED_METHODS = ("GET", "HEAD")

    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "max-age=3600")


def make_app(live: Live) -> tornado.web.Application:
    given = {"live": live}
    return tornado.web.Application(
        [
            (r"/", _Today, given), (r"/events", _TodayStream, given),
            (r"/runs", _Runs, given), (r"/runs/([0-9A-Za-z_.-]+)", _Run, given),
            (r"/runs/([0-9A-Za-z_.-]+)/log", _LogStream, given),
            (r"/timeline", _Timeline, given), (r"/checklist", _Checklist, given),
            (r"/static/(dashboard\.(?:css|js))", _Static, {"path": str(STATIC)}),
        ],
        default_handler_class=_Handler, default_handler_args=given,
        xsrf_cookies=False, compress_response=True,
    )  # fmt: skip


def serve(config: Config, _args: argparse.Namespace, watch: SignalWatch) -> None:
    """Serve until SIGTERM or SIGINT; SIGHUP re-reads the config (the address stays)."""
    asyncio.run(_serve(config, settings(config), watch))


async def _serve(config: Config, chosen: Settings, watch: SignalWatch) -> None:
    feed = Feed(monitor_endpoint(config))
    live = Live(config, feed)
    try:
        sockets = tornado.netutil.bind_sockets(chosen.port, chosen.host)
    except OSError as err:
        feed.close()
        where = f"{chosen.host}:{chosen.port}"
        raise ConfigError(
            config.file, "dashboard.port", f"cannot listen on {where}: {err.strerror}"
        ) from None
    server = tornado.httpserver.HTTPServer(make_app(live))
    server.add_sockets(sockets)
    for sock in sockets:
        host, port = sock.getsockname()[:2]
        log.info("listening on http://%s:%d/", f"[{host}]" if ":" in host else host, port)
    if chosen.insecure and not all(_loopback(s) for s in sockets):
        log.warning("serving beyond loopback with no authentication (dashboard.insecure)")
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(watch.fileno(), _on_signals, watch, config, stopping)
    listening = loop.create_task(feed.run(live.refresh_soon))
    listening.add_done_callback(lambda task: _feed_ended(task, stopping))
    ticking = loop.create_task(_tick(live, chosen.refresh))
    await stopping.wait()
    log.info("stopping")
    loop.remove_reader(watch.fileno())
    server.stop()
    feed.close()
    ticking.cancel()
    listening.cancel()
    try:
        await asyncio.wait_for(server.close_all_connections(), 5)
    except TimeoutError:
        log.warning("stopped with connections still open after 5 s")
    log.info("stopped")


def _feed_ended(task: asyncio.Task, stopping: asyncio.Event) -> None:
    """A feed that died of an error stops the dashboard loudly, for its supervisor to restart,
    rather than leaving pages that are never live again."""
    if not task.cancelled() and task.exception() is not None:
        log.error("the event feed stopped: %r; stopping", task.exception())
        stopping.set()


def _loopback(sock) -> bool:
    return is_loopback(sock.getsockname()[0])


async def _tick(live: Live, every: float) -> None:
    """Ask circus every *every* seconds, and refresh the open pages then."""
    loop = asyncio.get_running_loop()
    while True:
        await loop.run_in_executor(None, live.ask_circus)
        if live.feed.listeners:
            live.refresh_soon()
        await asyncio.sleep(every)


def _on_signals(watch: SignalWatch, config: Config, stopping: asyncio.Event) -> None:
    for signum in watch.take():
        if signum in STOP:
            stopping.set()
        elif signum == signal.SIGHUP:
            reload_config(config, "dashboard")
