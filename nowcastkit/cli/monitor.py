"""Watch what the manager sees and does, live: messages, replies, launches, exits, crashes.

    nowcastkit monitor                        # everything, until Ctrl-C
    nowcastkit monitor --worker sleep --type crash
    nowcastkit monitor --payload-only --type success
    nowcastkit monitor --json --count 10      # ten events as JSON lines, then exit

Events: received (a worker's message: type, sender host/pid/id, run), reply,
launch (run, module, args, pid, parent run), exit (run, status), crash (an
exit without a report, handled as that worker's crash message), group opened,
group released (race-condition groups), malformed. --type matches an event or
a message type. Several monitors can watch at once; a slow one misses events
rather than slowing the manager. A line on stderr says when the tap is live.
Exit status 0; 1 when --timeout passes before --count events arrived; 2 for a
usage or config error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid

import zmq

from nowcastkit.cli.output import dump_json, local_time
from nowcastkit.config import load_config
from nowcastkit.control import HELLO_PREFIX, monitor_endpoint

__all__ = ["add_arguments", "describe", "run"]

# Say so if the manager's socket has not answered by then (it may be down).
_PATIENCE = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--worker", metavar="W", help="events of worker W only")
    parser.add_argument("--type", metavar="T", help="events, or messages of type, T only")
    parser.add_argument(
        "--payload-only", action="store_true", help="print only message (and crash) payloads"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per event")
    parser.add_argument("--count", type=int, help="exit after N events")
    parser.add_argument("--timeout", type=float, help="exit after S seconds")


def run(args: argparse.Namespace) -> int:
    endpoint = monitor_endpoint(load_config(args.config))
    context = zmq.Context()
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    token = f"{HELLO_PREFIX}{uuid.uuid4().hex}"
    try:
        endpoint.secure(sock)
        sock.connect(str(endpoint))
        sock.setsockopt_string(zmq.SUBSCRIBE, f"{args.worker}/" if args.worker else "")
        # Subscriptions arrive in order: the answer to this one means the first is in effect.
        sock.setsockopt_string(zmq.SUBSCRIBE, token)
        return _watch(sock, args, str(endpoint), token)
    except KeyboardInterrupt:
        return 0
    finally:
        sock.close()
        context.term()


def _watch(sock: zmq.Socket, args: argparse.Namespace, endpoint: str, token: str) -> int:
    started = time.monotonic()
    deadline = started + args.timeout if args.timeout else None
    shown, live, warned = 0, False, False
    while args.count is None or shown < args.count:
        wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
        if wait <= 0:
            return 1 if args.count is not None else 0
        if not sock.poll(wait * 1000):
            if not live and not warned and time.monotonic() - started > _PATIENCE:
                _note(f"waiting for the manager's monitor socket at {endpoint}")
                warned = True
            continue
        topic, body = sock.recv_multipart()
        event = json.loads(body)
        if topic.decode() == token:
            if not live:
                _note(f"monitoring the manager at {endpoint}")
            live = True  # said again after a manager restart, not printed again
            continue
        if event["event"] == "hello" or not _wanted(event, args):
            continue
        line = _line(event, args)
        if line is not None:
            print(line, flush=True)
            shown += 1
    return 0


def _note(text: str) -> None:
    print(f"nowcastkit monitor: {text}", file=sys.stderr, flush=True)


def _wanted(event: dict, args: argparse.Namespace) -> bool:
    if args.worker and event["worker"] != args.worker:
        return False
    if args.payload_only and event["event"] not in ("received", "crash"):
        return False
    return not args.type or args.type in (event["event"], event.get("type"))


def _line(event: dict, args: argparse.Namespace) -> str | None:
    if args.payload_only:
        return dump_json(event.get("payload"))
    if args.json:
        return dump_json(event)
    when = local_time(event["time"], with_date=False) + f"{event['time'] % 1:.3f}"[1:]
    return f"{when}  {event['event']:<14} {event['worker']:<16} {describe(event)}"


def describe(event: dict) -> str:
    """The details of one event, in a few words."""
    kind = event["event"]
    if kind == "received":
        sender = f"pid {event['pid']} on {event['host']}" if event.get("pid") else "a worker"
        extra = "".join(f", {k} {event[k]}" for k in ("run", "id", "key") if event.get(k))
        return f"({event['type']}) from {sender}{extra}"
    if kind == "reply":
        return f"({event['type']})"
    if kind == "launch":
        command = " ".join([event["module"], *event["args"]])
        parent = f", after run {event['parent']}" if event.get("parent") else ""
        pid = "" if event.get("pid") is None else f", pid {event['pid']}"
        return f"{command} on {event['host']}: run {event['run']}{pid}{parent}"
    if kind == "exit":
        status = "unknown" if event["status"] is None else event["status"]
        pid = "" if event.get("pid") is None else f", pid {event['pid']}"
        return f"run {event['run']}{pid}, exit status {status}"
    if kind == "crash":
        payload = event["payload"]
        status = payload.get("exit status")
        how = payload.get("signal") or ("no exit status" if status is None else
                                        f"exit status {status}")  # fmt: skip
        return f"run {event['run']}: {payload.get('reason')} ({how})"
    if kind == "retry pending":
        due = local_time(event["due"], with_date=False)
        return (f"run {event['run']}: {event['after']}; attempt {event['attempt']}/"
                f"{event['attempts']} due {due}")  # fmt: skip
    if kind == "retry":
        return (f"attempt {event['attempt']}/{event['attempts']} is run {event['run']}, "
                f"after run {event['parent']}")  # fmt: skip
    if kind == "retry cancelled":
        return (f"attempt {event['attempt']}/{event['attempts']} after run {event['parent']} "
                f"cancelled by {event['by']}")  # fmt: skip
    if kind == "group opened":
        return f"race group waiting for {', '.join(event['waiting'])}"
    if kind == "group released":
        return f"race group released: launching {', '.join(event['launching']) or 'nothing'}"
    return ", ".join(f"{k} {v}" for k, v in event.items() if k not in ("time", "event", "worker"))
