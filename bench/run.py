"""nowcastkit benchmark: real broker, manager, scheduler and workers; figures with ratios.

    python -m bench                  # the full run (a few minutes)
    python -m bench --quick          # everything small, under a minute
    python -m bench --json out.json  # also write the figures as JSON

Every figure comes with a ratio to a baseline measured in the same run, because
absolute times on a shared machine are noisy: the manager's throughput against a
bare pyzmq echo through the same ROUTER/DEALER shape (and against that echo
committing each batch to SQLite before answering), a chain hop against a raw
pyzmq+PyYAML worker's hop and against ``python -c pass``, and so on. The table
ends with the issue's targets, met or not. Prints the table, then one JSON line.
"""

from __future__ import annotations

import argparse
import compileall
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import remote, scenarios
from bench.system import REPO

QUICK = {
    "seconds": 1.0,
    "sizes": [0, 1000, 5000],
    "clients": [1, 8],
    "steps": 6,
    "import_runs": 3,
    "startup_runs": 1,
    "scheduler_seconds": 7.0,
    "kills": 2,
    "memory_messages": 5000,
    "remote_steps": 4,
    # The poll load, quick: 10 runs, a 1 s poll interval and the looks after a submit
    # scaled by 0.1 (0.5, 1.5, 4.5 s), so that the steady state comes within seconds.
    "poll_runs": 10,
    "poll_interval": 1.0,
    "poll_intervals": 3,
    "poll_scale": 0.1,
}
FULL = {
    "seconds": 4.0,
    "sizes": [0, 1000, 5000],
    "clients": [1, 8],
    "steps": 20,
    "import_runs": 7,
    "startup_runs": 3,
    "scheduler_seconds": 21.0,
    "kills": 5,
    "memory_messages": 100_000,
    "remote_steps": 20,
    "poll_runs": 50,
    "poll_interval": 5.0,
    "poll_intervals": 6,
    "poll_scale": 1.0,
}


def measure(root: Path, p: dict) -> dict:
    figures: dict = {}
    figures["throughput"] = scenarios.throughput(root, p["sizes"], p["clients"], p["seconds"])
    figures["chain"] = scenarios.chain_hop(root, p["steps"])
    figures["curve"] = scenarios.curve_chain_hop(root, p["steps"])
    figures["imports"] = scenarios.import_cost(p["import_runs"])
    figures["startup"] = scenarios.startup(root, p["startup_runs"])
    figures["scheduler"] = scenarios.scheduler_lateness(root, p["scheduler_seconds"])
    figures["crash"] = scenarios.crash_detection(root, p["kills"])
    figures["memory"] = scenarios.memory(root, p["memory_messages"])
    # A remote figure that fails (an ssh login held up by something else on the machine,
    # say) is reported as not measured, with why, rather than losing the whole table.
    figures["ssh"] = remote.guarded(remote.ssh_chain_hop, root, p["remote_steps"])
    slurm = remote.guarded(remote.slurm, root, p["remote_steps"], p["poll_runs"],
                           p["poll_interval"], p["poll_intervals"], p["poll_scale"])  # fmt: skip
    figures["slurm"] = slurm.get("chain", slurm)
    figures["poll"] = slurm.get("poll", slurm)
    return figures


Row = tuple[str, float, str, float | None, str]


def row(name: str, value: float, unit: str, base: float | None = None, against: str = "") -> Row:
    """A table row: the figure, and its ratio to *base* (named *against*) when there is one."""
    return (name, value, unit, None if base is None else value / base, against)


def rows(f: dict) -> list[Row]:
    """(figure, value, unit, ratio, baseline the ratio is against)."""
    out = []
    tp = f["throughput"]
    for key, value in tp.items():
        kind, *rest = key.split("/")
        clients = rest[-1]
        echo = tp[f"echo/{clients}"]
        name = {
            "echo": f"echo, {clients} clients",
            "durable-echo": f"echo committing each batch, {clients} clients",
            "manager": f"manager, {rest[0]} keys, {clients} clients",
            "manager-yaml": f"manager, {rest[0]} keys, {clients} clients, YAML msgs",
            "manager-entries": f"manager, 1 key of {rest[0]} entries, {clients} clients",
        }[kind]
        rate = value["msgs_per_s"]
        out.append(row(f"{name}: msgs/s", rate, "msg/s", echo["msgs_per_s"], "echo"))
        for p in ("p50", "p99"):
            out.append(row(f"{name}: {p}", value[f"{p}_ms"], "ms", echo[f"{p}_ms"], "echo"))
        durable = tp.get(f"durable-echo/{clients}")
        if kind.startswith("manager") and rest[0] == "0" and durable:
            out.append(
                row(f"{name}: msgs/s vs committing echo", rate, "msg/s",
                    durable["msgs_per_s"], "committing echo")
            )  # fmt: skip
        if kind in ("manager", "manager-entries") and rest[0] != "0":
            empty = tp[f"manager/0/{clients}"]["msgs_per_s"]
            out.append(row(f"{name}: msgs/s vs empty checklist", rate, "msg/s", empty, "0 keys"))
    ch, im, st, sc, cr, me = (
        f[k] for k in ("chain", "imports", "startup", "scheduler", "crash", "memory")
    )
    pass_ms = ch["python_pass_ms"]
    out += [
        row("chain hop", ch["hop_ms"], "ms", ch["raw_hop_ms"], "raw worker"),
        row("chain hop", ch["hop_ms"], "ms", pass_ms, "python -c pass"),
        row("raw pyzmq+yaml worker hop", ch["raw_hop_ms"], "ms", pass_ms, "python -c pass"),
        row("CURVE chain hop", f["curve"]["hop_ms"], "ms", f["curve"]["plain_hop_ms"],
            "plain chain hop"),
        row("python -c pass", pass_ms, "ms"),
        row("import: nowcastkit beyond pyzmq+yaml", im["beyond_ms"], "ms"),
        row("worker --help wall", im["wall_ms"], "ms", im["base_wall_ms"], "import zmq,yaml"),
        row("broker spawn to listening", st["broker_ms"], "ms", pass_ms, "python -c pass"),
        row("manager spawn to listening", st["manager_ms"], "ms", pass_ms, "python -c pass"),
        row("scheduler fire delay median", sc["median_ms"], "ms"),
        row("scheduler fire delay max", sc["max_ms"], "ms"),
        row("scheduled worker start delay median", sc["worker_start_median_ms"], "ms",
            pass_ms, "python -c pass"),
        row("crash detection median", cr["median_ms"], "ms"),
        row("crash detection max", cr["max_ms"], "ms"),
        row("manager RSS before", me["before_mib"], "MiB"),
        row(f"manager RSS after {me['messages']:,} msgs", me["after_mib"], "MiB",
            me["before_mib"], "before"),
    ]  # fmt: skip
    ssh, sl, po = (f.get(k, {"skipped": "not measured"}) for k in ("ssh", "slurm", "poll"))
    if "skipped" not in ssh:
        out += [
            row("ssh chain hop", ssh["hop_ms"], "ms", ssh["raw_hop_ms"], "raw ssh worker"),
            row("raw pyzmq worker hop over ssh", ssh["raw_hop_ms"], "ms"),
        ]
    if "skipped" not in sl:
        out += [
            row("slurm chain hop", sl["hop_ms"], "ms", sl["raw_hop_ms"], "raw sbatch worker"),
            row("raw pyzmq worker hop by sbatch", sl["raw_hop_ms"], "ms"),
            row("sbatch to job start", sl["sbatch_start_ms"], "ms"),
        ]
    if "skipped" not in po:
        out.append(row(f"slurm queries per poll interval, {po['runs']} runs",
                       po["queries_per_interval"], "query"))  # fmt: skip
    return out


def skipped(f: dict) -> list[str]:
    """One line for each remote figure not measured, saying why."""
    names = {"ssh": "ssh chain hop", "slurm": "slurm chain hop", "poll": "slurm poll load"}
    return [f"skipped: {names[k]}: {f[k]['skipped']}" for k in names if "skipped" in f.get(k, {})]


def targets(f: dict) -> list[tuple[str, bool, str]]:
    tp, ch, sc = f["throughput"], f["chain"], f["scheduler"]
    tp8 = tp["manager/0/8"]["msgs_per_s"] / tp["echo/8"]["msgs_per_s"]
    flat = min(
        tp[f"manager/5000/{n}"]["msgs_per_s"] / tp[f"manager/0/{n}"]["msgs_per_s"]
        for n in (1, 8)
        if f"manager/5000/{n}" in tp
    )
    entries = [v for k, v in tp.items() if k.startswith("manager-entries/")]
    nested = entries[0]["msgs_per_s"] / tp["manager/0/8"]["msgs_per_s"] if entries else 0.0
    durable = tp["manager/0/8"]["msgs_per_s"] / tp["durable-echo/8"]["msgs_per_s"]
    hop = ch["hop_ms"] / ch["raw_hop_ms"]
    rss = f["memory"]["after_mib"] / f["memory"]["before_mib"]
    return [
        ("8 clients, empty checklist >= 50% of echo", tp8 >= 0.5, f"{tp8:.0%}"),
        ("8 clients, empty >= 80% of committing echo", durable >= 0.8, f"{durable:.0%}"),
        ("5,000 keys >= 80% of empty", flat >= 0.8, f"{flat:.0%}"),
        ("1 key of 5,000 entries >= 80% of empty", nested >= 0.8, f"{nested:.0%}"),
        ("chain hop <= 1.5x raw worker", hop <= 1.5, f"{hop:.2f}x"),
        (
            "import beyond pyzmq+yaml <= 20 ms",
            f["imports"]["beyond_ms"] <= 20,
            f"{f['imports']['beyond_ms']:.1f} ms",
        ),
        ("scheduler median <= 50 ms", sc["median_ms"] <= 50, f"{sc['median_ms']:.1f} ms"),
        ("scheduler max <= 1 s", sc["max_ms"] <= 1000, f"{sc['max_ms']:.1f} ms"),
        ("crash detection <= 1 s", f["crash"]["max_ms"] <= 1000, f"{f['crash']['max_ms']:.0f} ms"),
        ("RSS within 10%", rss <= 1.10, f"{rss:.3f}x"),
        *remote_targets(f),
    ]


def remote_targets(f: dict) -> list[tuple[str, bool, str]]:
    out = []
    if "skipped" not in f.get("ssh", {"skipped": ""}):
        hop = f["ssh"]["hop_ms"] / f["ssh"]["raw_hop_ms"]
        out.append(("ssh chain hop <= 1.2x raw ssh worker", hop <= 1.2, f"{hop:.2f}x"))
    if "skipped" not in f.get("slurm", {"skipped": ""}):
        hop = f["slurm"]["hop_ms"] / f["slurm"]["raw_hop_ms"]
        out.append(("slurm chain hop <= 1.2x raw sbatch worker", hop <= 1.2, f"{hop:.2f}x"))
    if "skipped" not in f.get("poll", {"skipped": ""}):
        rate = f["poll"]["queries_per_interval"]
        out.append(("slurm queries per poll interval <= 1", rate <= 1.05, f"{rate:.2f}"))
    return out


def report(figures: dict) -> str:
    lines = [f"{'figure':<52} {'value':>10} {'unit':<6} {'ratio':>7}  vs"]
    for name, value, unit, ratio, base in rows(figures):
        shown = "n/a" if math.isnan(value) else f"{value:,.1f}"
        lines.append(
            f"{name:<52} {shown:>10} {unit:<6} {'' if ratio is None else f'{ratio:.2f}':>7}  {base}"
        )
    lines += skipped(figures)
    lines.append("")
    lines.append("targets:")
    for name, met, value in targets(figures):
        lines.append(f"  {'met    ' if met else 'NOT MET'}  {name:<44} {value}")
    tp = figures["throughput"]
    if "durable-echo/8" in tp:
        durable = tp["durable-echo/8"]["msgs_per_s"]
        lines.append(
            "  (8 clients: the echo committing each batch reaches"
            f" {durable / tp['echo/8']['msgs_per_s']:.0%} of the echo,"
            f" the manager {tp['manager/0/8']['msgs_per_s'] / durable:.0%} of that echo)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="everything small, under a minute")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder")
    args = parser.parse_args(argv)
    # Byte-compile first, as an installed package is: with PYTHONDONTWRITEBYTECODE set
    # (as on this machine) every worker would otherwise compile nowcastkit from source.
    compileall.compile_dir(REPO / "nowcastkit", quiet=1)
    compileall.compile_dir(REPO / "workers", quiet=1)
    # /tmp is on the same disk as the checkout here (not tmpfs), so fsyncs cost what they cost.
    root = Path(tempfile.mkdtemp(prefix="nowcastkit-bench-"))
    started = time.monotonic()
    try:
        figures = measure(root, QUICK if args.quick else FULL)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    figures["mode"] = "quick" if args.quick else "full"
    figures["seconds"] = round(time.monotonic() - started, 1)
    print(report(figures))
    print(f"({figures['mode']} run, {figures['seconds']} s)")
    print(json.dumps(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
