"""Workers' requests answered in batches: every request waiting, one commit, then the replies.

    requests = receive(sock)                     # after a poll: up to BATCH_SIZE
    replies, launches = answer(manager, bodies)  # one transaction, a savepoint each

The commit (an fsync) is what a message costs most, so every request already
waiting shares one. Each request is handled in its own savepoint: one that
fails gets an error reply and is undone, in the store and in memory, without
touching the others. Nothing is replied before the commit, every request gets
exactly one reply, and workers are launched only after the replies are sent.

The socket is a DEALER connected to the broker's DEALER, so it can take several
requests before answering any. A request arrives as a REQ envelope (routing
frames, then an empty delimiter) followed by the broker's tag and the body; the
envelope goes back unchanged in front of the reply, as a REP socket would do.
"""

from __future__ import annotations

import logging
import traceback

import zmq

from nowcastkit.manager.changes import atomic
from nowcastkit.manager.dispatch import Launch, Manager, handle

__all__ = ["BATCH_SIZE", "answer", "receive", "serve"]

log = logging.getLogger("manager")

#: Most requests handled under one commit; bounds the latency a burst adds to its first reply.
BATCH_SIZE = 64
_ERROR = b"source: manager\ntype: manager error\npayload: null\n"


def receive(sock: zmq.Socket, limit: int = BATCH_SIZE) -> list[list[bytes]]:
    """The requests waiting on *sock* (at most *limit*), without waiting for more."""
    requests = []
    while len(requests) < limit:
        try:
            requests.append(sock.recv_multipart(flags=zmq.NOBLOCK))
        except zmq.Again:
            break
    return requests


def split_envelope(frames: list[bytes]) -> tuple[list[bytes], list[bytes]] | None:
    """Routing envelope and request (``[tag, body]``) around the empty delimiter; None if absent."""
    try:
        cut = frames.index(b"")
    except ValueError:
        return None
    return frames[:cut], frames[cut + 1 :]


def error_reply(request: list[bytes]) -> list[bytes]:
    """The reply for a request the manager failed to handle: tagged as the broker expects."""
    return [request[0], _ERROR] if len(request) > 1 else [_ERROR]


def answer(manager: Manager, requests: list[list[bytes]]) -> tuple[list[list[bytes]], list[Launch]]:
    """Reply frames for each request, in order, and the runs to start; all committed at once."""
    replies, launches = [], []
    try:
        with manager.flow.checked_once(), atomic(manager.store, manager.changes):
            for request in requests:
                try:
                    reply, more = handle(manager, request)
                except Exception:  # the loop's edge: this request's savepoint is rolled back
                    log.error("manager error:\n%s", traceback.format_exc().rstrip())
                    reply, more = error_reply(request), []
                if not manager.store.conn.in_transaction:
                    # SQLite gave up the whole transaction (disk full, I/O error): none of
                    # the batch is stored, so none of it may be acknowledged.
                    raise RuntimeError("the store rolled back the batch's transaction")
                replies.append(reply)
                launches.extend(more)
    except Exception:  # the commit failed: every change in the batch is undone
        log.error("manager error: batch not committed:\n%s", traceback.format_exc().rstrip())
        return [error_reply(request) for request in requests], []
    return replies, launches


def serve(manager: Manager, sock: zmq.Socket) -> list[Launch]:
    """Answer every request waiting on *sock*; return the runs to start now the replies are out."""
    envelopes, requests = [], []
    for frames in receive(sock):
        split = split_envelope(frames)
        if split is None:  # a REP socket drops these too: there is no one to reply to
            log.error("request without a routing envelope (%d frames) dropped", len(frames))
            continue
        envelopes.append(split[0])
        requests.append(split[1])
    if not requests:
        return []
    replies, launches = answer(manager, requests)
    for envelope, reply in zip(envelopes, replies, strict=True):
        try:
            sock.send_multipart([*envelope, b"", *reply], flags=zmq.NOBLOCK)
        except zmq.Again:  # broker gone: it resends the request, answered from the store
            log.warning("broker not reachable; reply dropped, the request will come again")
    return launches
