"""What a client socket's monitor says of its connection: refused, wrong key, or back.

    handshakes = Handshakes()
    verdict = handshakes.see(event["event"], event["value"])   # None, or one of the below
    if verdict == RECONNECTED: ...                            # resend on a fresh socket now
    elif verdict: raise MessageError(refusal(verdict, endpoint, "this worker's key", path))

``monitor_event(sock)`` reads one event from a monitor socket as ``(event, value)``.

A CURVE server that rejects a client's key answers with an error (``400``); one
that cannot read a client's hello, because the client has the wrong server key,
just drops it, which the client sees as a handshake failed with no detail, again
at every retry. A client without CURVE meeting a CURVE server (or the reverse)
fails on the mechanism, or, when the server hangs up first, with no detail: without a
key of its own, a client takes three of those for a mechanism mismatch too.
Plain classes, no attrs: every worker imports this.
"""

from __future__ import annotations

import struct

import zmq

__all__ = ["EVENTS", "MISMATCH", "RECONNECTED", "REJECTED", "WRONG_SERVER_KEY", "Handshakes",
           "monitor_event", "refusal"]  # fmt: skip

REJECTED = "rejected"
WRONG_SERVER_KEY = "wrong server key"
MISMATCH = "mechanism mismatch"
RECONNECTED = "reconnected"
#: The events a client's monitor socket is asked for.
EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_DISCONNECTED
)  # fmt: skip
_MECHANISM_MISMATCH = 0x11000002
#: Handshakes failed with no detail in a row before the server key is blamed.
_NO_DETAIL_LIMIT = 3


def monitor_event(monitor: zmq.Socket) -> tuple[int, int]:
    """The next event on a monitor socket: its number and value.

    Read here, not with pyzmq's ``recv_monitor_message``, whose module imports asyncio:
    about 20 ms more at every worker's start.
    """
    frames = monitor.recv_multipart()
    # ZeroMQ's monitor format: a 16-bit event number and a 32-bit value, then the endpoint.
    event, value = struct.unpack("=HI", frames[0][:6])
    return event, value


class Handshakes:
    """The handshake events one client socket has seen, judged as they come."""

    def __init__(self) -> None:
        self.disconnected = False
        self.no_detail = 0

    def see(self, event: int, value: int) -> str | None:
        """The verdict on one more event, or None when there is nothing to do."""
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return REJECTED
        if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == _MECHANISM_MISMATCH:
            return MISMATCH
        if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            self.no_detail += 1
            return WRONG_SERVER_KEY if self.no_detail >= _NO_DETAIL_LIMIT else None
        if event == zmq.EVENT_DISCONNECTED:
            self.disconnected = True
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            again, self.disconnected, self.no_detail = self.disconnected, False, 0
            return RECONNECTED if again else None
        return None


def refusal(
    verdict: str, endpoint: str, who: str, key: str, server_key: str, server: str = "the broker"
) -> str:
    """The one line a refused client ends with: who refused, whose key, what to do."""
    where = f"{server} at {endpoint.removeprefix('tcp://')}"
    if verdict == REJECTED:
        return (f"{where} rejected {who} ({key}): it is not in the allow-list; "
                "there: nowcastkit keys allow, then SIGHUP")  # fmt: skip
    if verdict == WRONG_SERVER_KEY and key:
        return (f"{where} dropped {_NO_DETAIL_LIMIT} handshakes in a row: "
                f"the configured server public key ({server_key}) looks wrong")  # fmt: skip
    return (f"{where} uses another security mechanism: zmq.curve is "
            f"{'set' if key else 'not set'} here")  # fmt: skip
