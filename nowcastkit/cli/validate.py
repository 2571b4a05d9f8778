"""Check the config and the flow, reporting every problem at once.

    nowcastkit validate nowcast.yaml
    nowcastkit validate --dry-run sleep success --payload '{sleep time: 5}'

Finds missing or mistyped keys, unset environment variables, a next workers
module that will not import, registered workers without ``after_<worker>``,
``after_<worker>`` functions for unregistered workers, worker modules named in
the next workers module (``NextWorker("...")``) or the schedule that cannot be
found or are not registered, and every bad ``scheduled workers`` entry
(``every``, ``at``, ``timezone``, ``catch up`` ...), and every bad ``alerts``
channel (an unknown kind, a bad port, no ``to``, an unknown event or worker),
and every bad ``deadlines`` entry (a bad time, an unknown time zone, worker or days),
and a bad ``dashboard`` setting (an address beyond loopback without ``insecure``).
For a system written for the reference design it lists what is still to change: each
import line naming ``nemo_nowcast`` (in the next workers module's package and the worker
modules it and the schedule name), each ``after_<worker>`` dispatch dict lacking a
registered message type, and each built-in worker the flow runs whose registry entry lacks
a type it sends (``clear checklist``); and notes what needs no change: its own workers
named as module strings (run as nowcastkit's built-ins) and ``zmq.ports.logging`` port
pools. Exit status 0 when valid (notes alone included), 1 when not (a config file that
cannot be read included); 2 for a usage error, such as a --payload that is not YAML.
``--dry-run WORKER TYPE`` calls ``after_<worker>`` on a copy of the current
checklist and prints the workers the manager would launch; nothing changes.
Exit status 1 when ``after_<worker>`` is missing or fails.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import attrs
import yaml

from nowcastkit import alerts, deadlines, migration, race, security
from nowcastkit import checklist as checklist_file
from nowcastkit.config import Config, check
from nowcastkit.dashboard.settings import settings as dashboard_settings
from nowcastkit.errors import ConfigError, FlowError, NowcastkitError
from nowcastkit.flow import Flow
from nowcastkit.hosts import remote_host
from nowcastkit.message import Message
from nowcastkit.scheduler import entry_problems

__all__ = ["add_arguments", "problems", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--dry-run",
        nargs=2,
        metavar=("WORKER", "TYPE"),
        help="call after_WORKER for a TYPE message against the current checklist",
    )
    parser.add_argument("--payload", default="null", help="the dry-run message's payload, YAML")


def run(args: argparse.Namespace) -> int:
    found, config, flow = problems(args.config)
    notes = [p for p in found if isinstance(p, Note)]
    found = [p for p in found if not isinstance(p, Note)]
    if args.dry_run and not found:
        return _dry_run(args, config, flow)
    if args.json:
        print(json.dumps({"config": str(args.config), "valid": not found, "problems": [
            {"file": str(p.path), "key": p.key, "problem": p.problem} for p in found
        ], "notes": [
            {"file": str(p.path), "key": p.key, "note": p.problem} for p in notes
        ]}))  # fmt: skip
    else:
        for problem in found:
            print(problem)
        for note in notes:
            print(f"note: {note}")
        print(f"{args.config}: {len(found)} problem{'s'[: len(found) != 1]}" if found else
              f"{args.config}: valid")  # fmt: skip
    return 1 if found else 0


class Note(ConfigError):
    """Something a migrating operator should know that needs no change: it fails nothing."""


def problems(path: Path) -> tuple[list[ConfigError], Config | None, Flow | None]:
    """Every problem with the config at *path* and its flow (:class:`Note` among them for
    what is only to know); the loaded config if usable."""
    try:
        data, found = check(Path(path).expanduser().absolute())
    except ConfigError as err:
        return [err], None, None
    config = Config(data, Path(path).expanduser().absolute())
    found.extend(_logging_port_notes(config))
    found.extend(_host_problems(config))
    found.extend(alerts.problems(config))
    found.extend(deadlines.problems(config))
    found.extend(_dashboard_problems(config))
    found.extend(_security_problems(config))
    registry = data.get("message registry")
    if not (
        isinstance(registry, dict)
        and isinstance(registry.get("next workers module"), str)
        and isinstance(registry.get("workers"), dict)
    ):  # check() has said what is wrong with it; the schedule can still be checked
        return found + _schedule_problems(config, None), None, None
    flow = Flow(registry["next workers module"], config.file.parent)
    flow.refresh()
    tree = _syntax_tree(flow.source)
    own = _package_files(flow.source, flow.module_name)
    for source in own:
        found += _import_problems(source, tree if source == flow.source else None)
    for source in sorted({_module_file(m) for m in _named_modules(config, flow.source)} - {None}
                         - set(own)):  # fmt: skip
        found += _import_problems(source, None)  # a worker module beyond the system's package
    if flow.error is not None and tree is not None and migration.reference_imports(tree):
        flow = _translated_flow(flow, tree)  # to say what else to change, before the imports
    if flow.error is not None:
        key = "message registry.next workers module"
        found.append(ConfigError(config.file, key, str(flow.error)))
        flow = None
    else:
        found += _flow_problems(config, flow)
        found += _dispatch_problems(flow.source, tree, registry["workers"])
    found += _schedule_problems(config, registry["workers"])
    found += _built_in_problems(config, flow, registry["workers"])
    return found, config, flow


def _flow_problems(config: Config, flow: Flow) -> list[ConfigError]:
    registered = config["message registry"]["workers"]
    found = [
        ConfigError(config.file, f"message registry.workers.{name}",
                    f"no after_{name} function in {flow.source}")
        for name in registered
        if not callable(getattr(flow.module, f"after_{name}", None))
    ]  # fmt: skip
    for attribute in sorted(vars(flow.module)):
        name = attribute.removeprefix("after_")
        if attribute.startswith("after_") and name not in registered:
            found.append(ConfigError(
                flow.source, attribute, f"worker {name!r} is not in message registry.workers"
            ))  # fmt: skip
    installed = migration.reference_installed()
    for line, module in _named_workers(flow.source):
        key = f'line {line}: NextWorker("{module}")'
        if (stand_in := migration.stand_in(module, installed)) is not None:
            found.append(Note(flow.source, key, f"runs as {stand_in}, nowcastkit's built-in"))
        elif not _importable(module):
            found.append(ConfigError(flow.source, key, "worker module cannot be found"))
            continue
        if module.rpartition(".")[2] not in registered:
            found.append(ConfigError(flow.source, key, f"worker {module.rpartition('.')[2]!r} "
                                     "is not in message registry.workers"))  # fmt: skip
    return found


def _built_in_problems(config: Config, flow: Flow | None, registered: dict) -> list[ConfigError]:
    """A built-in worker the flow or the schedule runs, without the message types it sends."""
    modules = _named_modules(config, flow.source if flow else None)
    return [
        ConfigError(config.file, f"message registry.workers.{name}", problem)
        for name, problem in migration.built_in_gaps(modules, registered).items()
    ]


def _named_modules(config: Config, source: Path | None) -> list[str]:
    """The worker modules named as strings: in ``NextWorker("...")`` calls in *source*, and
    in the schedule."""
    entries = config.get("scheduled workers")
    scheduled = [str(m) for e in entries if isinstance(e, dict) for m in e] if isinstance(
        entries, list) else []  # fmt: skip
    return [module for _, module in _named_workers(source)] + scheduled


def _logging_port_notes(config: Config) -> list[Note]:
    ports = config.get("zmq", {}).get("ports", {}) if isinstance(config.get("zmq"), dict) else {}
    pools = migration.logging_port_pools(ports.get("logging") if isinstance(ports, dict) else None)
    text = ("not used: the log aggregator binds one port (zmq.ports.logging.aggregator) that "
            "every process connects to; remove it when you like")  # fmt: skip
    return [Note(config.file, f"zmq.ports.logging.{key}", text) for key in pools]


def _package_files(source: Path | None, module_name: str) -> list[Path]:
    """The next workers module's file and, when it is in a package, every module of its
    top-level package: the system's own code, workers and shared modules alike."""
    if source is None:
        return []
    top = source.parents[module_name.count(".") - 1] if "." in module_name else None
    return sorted(top.rglob("*.py")) if top is not None else [source]


def _syntax_tree(source: Path | None) -> ast.Module | None:
    try:
        return ast.parse(Path(source).read_bytes(), str(source))
    except (OSError, SyntaxError, TypeError, ValueError):
        return None


def _import_problems(source: Path | None, tree: ast.Module | None) -> list[ConfigError]:
    """An import of the reference design's package in *source*, a line each."""
    tree = tree or _syntax_tree(source)
    if tree is None:
        return []
    return [
        ConfigError(source, f"line {f.line}", f.text)
        for f in migration.reference_imports(tree, _nowcastkit_has)
    ]


def _nowcastkit_has(dotted: str) -> bool:
    """Whether *dotted* (``nowcastkit.worker.NextWorker``, ``nowcastkit.cli``) can be imported."""
    if _importable(dotted):
        return True
    parent, _, name = dotted.rpartition(".")
    try:
        return hasattr(importlib.import_module(parent), name)
    except ImportError:
        return False


def _dispatch_problems(
    source: Path, tree: ast.Module | None, registered: dict
) -> list[ConfigError]:
    if tree is None:
        return []
    return [ConfigError(source, f"line {f.line}", f.text)
            for f in migration.dispatch_gaps(tree, registered)]  # fmt: skip


def _translated_flow(flow: Flow, tree: ast.Module) -> Flow:
    """*flow*'s module loaded with its imports made from nowcastkit, or *flow* if it fails."""
    module = types.ModuleType(flow.module_name)
    module.__file__ = str(flow.source)
    try:
        exec(compile(migration.translated(tree), str(flow.source), "exec"), module.__dict__)
    except Exception:  # a user's module can raise anything at import
        return flow
    return Flow(flow.module_name, flow.search_path, module=module, source=flow.source)


def _module_file(module: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec and spec.has_location and spec.origin else None


def _named_workers(source: Path | None) -> list[tuple[int, str]]:
    """The ``NextWorker("module", ...)`` calls with a literal module name in *source*."""
    if (tree := _syntax_tree(source)) is None:
        return []
    return [
        (node.lineno, node.args[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", ""))
        == "NextWorker" and node.args and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ]  # fmt: skip


def _schedule_problems(config: Config, registered: dict | None) -> list[ConfigError]:
    """Every bad scheduler setting or entry, and each scheduled module unknown or unregistered.

    With no usable registry (*registered* None), modules are only checked to exist.
    """
    found = entry_problems(config)
    installed = migration.reference_installed()
    entries = config.get("scheduled workers")
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        for module in entry if isinstance(entry, dict) else []:
            key = f"scheduled workers[{i}].{module}"
            if (stand_in := migration.stand_in(str(module), installed)) is not None:
                found.append(Note(config.file, key, f"runs as {stand_in}, nowcastkit's built-in"))
            elif not _importable(str(module)):
                found.append(ConfigError(config.file, key, "worker module cannot be found"))
                continue
            if (
                registered is not None
                and (name := str(module).rpartition(".")[2]) not in registered
            ):
                problem = f"worker {name!r} is not in message registry.workers"
                found.append(ConfigError(config.file, key, problem))
    return found


def _host_problems(config: Config) -> list[ConfigError]:
    """What is wrong with each ``run.enabled hosts`` entry, as a launch would find it."""
    run = config.get("run")
    hosts = run.get("enabled hosts") if isinstance(run, dict) else None
    if hosts is None:
        return []
    if not isinstance(hosts, dict):
        return [ConfigError(config.file, "run.enabled hosts", f"got {hosts!r}, expected a mapping")]
    found = []
    for host in hosts:
        try:
            remote_host(config, str(host))
        except ConfigError as err:
            found.append(err)
    return found


def _dashboard_problems(config: Config) -> list[ConfigError]:
    try:
        dashboard_settings(config)
    except ConfigError as err:
        return [err]
    return []


def _security_problems(config: Config) -> list[ConfigError]:
    """A broker exposed without CURVE; with CURVE, every key file the config names."""
    zmq_config = config.get("zmq")
    if not isinstance(zmq_config, dict) or not isinstance(zmq_config.get("host"), str):
        return []  # check() has said what is wrong with it
    if (refusal := security.exposure(config)) is not None:
        return [refusal]
    if not isinstance(zmq_config.get("curve"), dict) or not zmq_config["curve"]:
        return []
    return security.curve_problems(config)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _dry_run(args: argparse.Namespace, config: Config, flow: Flow) -> int:
    worker, msg_type = args.dry_run
    try:
        payload = yaml.load(args.payload, Loader=yaml.CSafeLoader)
    except yaml.YAMLError as err:
        raise NowcastkitError(f"--payload: not valid YAML: {err.problem}") from None
    state = _current_checklist(config)
    try:
        workers, must_finish = flow.after(Message(worker, msg_type, payload), config, state)
    except FlowError as err:
        print(f"after_{worker}: {err}", file=sys.stderr)
        return 1
    settled = race.settle((), worker, workers, must_finish)
    result = {
        "launch": [_describe(w, config) for w in settled.launch],
        "hold": [{"until": sorted(g.waiting), "workers": [_describe(w, config) for w in g.held]}
                 for g in settled.groups],
    }  # fmt: skip
    if args.json:
        print(json.dumps(result))
        return 0
    for line in result["launch"]:
        print(f"would launch: {line['command']}")
    for group in result["hold"]:
        print(
            f"would wait for {', '.join(group['until'])} to finish, then launch what "
            "their after_ functions return"
        )
    if not result["launch"] and not result["hold"]:
        print(f"after_{worker} launches nothing for a {msg_type} message")
    return 0


def _current_checklist(config: Config) -> dict:
    try:
        return checklist_file.read(Path(config["checklist file"]))
    except NowcastkitError:
        return {}


def _describe(worker: Any, config: Config) -> dict:
    """A worker the flow returns, and the command the manager would run (a built-in's for
    the reference design's own)."""
    runs = migration.stand_in(worker.module, migration.reference_installed())
    command = attrs.evolve(worker, module=runs).command(config) if runs else worker.command(config)
    return {"module": worker.module, "args": list(worker.args), "host": worker.host,
            "command": " ".join(command)}  # fmt: skip
