"""Remote runs: a chain over a real local sshd, a chain of Slurm jobs, and the Slurm poll load.

    ssh_chain_hop(root, steps)       # workers on host ``far``, reached through sshd on loopback
    slurm_chain_hop(root, steps)     # workers as jobs of the test Slurm (tests/slurm_cluster.py)
    poll_load(root, runs, interval)  # queries per poll interval with many runs waiting

Each needs what the tests need (``bin/system-packages`` installs it): an sshd, or munged,
slurmctld, slurmd and the Slurm clients. When they are missing the figure is skipped
with one line saying why (``{"skipped": ...}``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from bench.system import REPO, NowcastSystem, RawSystem, config_for

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"

#: A worker that only waits: a job that stays running, or pending, for the poll load.
WAIT_WORKER = """\
import time
time.sleep(3600)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for path in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                pids = [int(p) for p in path.read_text().split()]
                found += pids
                todo += pids
    return found


@contextlib.contextmanager
def sshd(folder: Path) -> Iterator[list[str]]:
    """A real sshd on 127.0.0.1 letting this user in with a key of its own; the ssh options."""
    folder.mkdir(parents=True)
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)],
                       check=True, timeout=30)  # fmt: skip
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    port = _free_port()
    (folder / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPidFile {folder / 'sshd.pid'}\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nLogLevel ERROR\n"
    )
    kind, key = (folder / "host_key.pub").read_text().split()[:2]
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {kind} {key}\n")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
    with open(folder / "sshd.log", "wb") as log:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(folder / "sshd_config")],
                                stderr=log, stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not _accepts(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd not listening: {(folder / 'sshd.log').read_text()}")
            time.sleep(0.02)
        yield [
            "-F", "/dev/null", "-p", str(port), "-i", str(folder / "client_key"),
            "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={folder / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=yes",
        ]  # fmt: skip
    finally:
        # Each connection is a process of its own that outlives sshd, and with it the
        # shared connection of the client side: end them too, TERM first (a login shell
        # killed outright can leave pyenv's rehash lock behind, hanging later sessions).
        sessions = _descendants(proc.pid)
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0.0)):
            for pid in sessions:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and any(
                Path(f"/proc/{pid}").exists() for pid in sessions
            ):
                time.sleep(0.05)
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def slurm_cluster() -> Iterator:
    """The tests' single-node Slurm, started in a short folder; SLURM_CONF set meanwhile."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from slurm_cluster import start_cluster
    finally:
        sys.path.remove(str(REPO / "tests"))
    folder = Path(tempfile.mkdtemp(prefix="nk-slurm-"))  # short: munged's socket path
    cluster, before = None, os.environ.get("SLURM_CONF")
    try:
        cluster = start_cluster(folder)
        os.environ["SLURM_CONF"] = str(cluster.conf_path)
        yield cluster
    finally:
        if before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = before
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def guarded(measure, *args) -> dict:
    """*measure*'s figures, or ``{"skipped": "failed: ..."}`` when it raised."""
    try:
        return measure(*args)
    except Exception as err:  # any failure: this figure is not measured, the others are
        first = (str(err).splitlines() or [""])[0][:200]
        return {"skipped": f"failed: {type(err).__name__}: {first}"}


def missing_sshd() -> str | None:
    if not os.access(SSHD, os.X_OK) or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        return "no sshd, ssh or ssh-keygen (bin/system-packages installs openssh-server)"
    return None


def missing_slurm() -> str | None:
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from slurm_cluster import missing_programs
    finally:
        sys.path.remove(str(REPO / "tests"))
    if missing := missing_programs():
        return f"no {', '.join(missing)} (bin/system-packages installs Slurm and munge)"
    return None


def _envvars(folder: Path) -> Path:
    """What the remote side sources first: nowcastkit and the bench's workers importable."""
    path = folder.with_name(f"{folder.name}-envvars.sh")  # the folder is made later
    path.write_text(
        f"PYTHONPATH={shlex.quote(f'{REPO}:{folder}')}; export PYTHONPATH\n"
        "PYTHONUNBUFFERED=1; export PYTHONUNBUFFERED\n"
        f"cd {shlex.quote(str(folder))}\n"
    )
    return path


def _host_entry(folder: Path, **entry) -> dict:
    return {
        "python": sys.executable,
        "config file": str(folder / "nowcast.yaml"),
        "envvars": str(_envvars(folder)),
        "run dir": str(folder / "remote-runs"),
        **entry,
    }


def _hops(system: NowcastSystem, steps: int, host: str, stall: float = 20) -> list[float]:
    """Launch the chain's first worker on *host*; the stamps of its *steps* final messages.

    A hop takes a second or two; none for *stall* seconds is a chain stalled (a remote
    login held up by something else on the machine, say): RuntimeError.
    """
    system.control({"command": "launch", "worker": "step", "args": ["1"], "host": host})
    hops = system.folder / "hops.log"
    seen, deadline = 0, time.monotonic() + stall
    while (count := len(_lines(hops))) < steps:
        if count > seen:
            seen, deadline = count, time.monotonic() + stall
        if time.monotonic() > deadline:
            raise RuntimeError(f"chain stalled after {count} hops: none for {stall:.0f} s")
        time.sleep(0.02)
    return [float(line.split()[0]) for line in _lines(hops)]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _gaps(stamps: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(stamps)]


def _summary(stamps: list[float]) -> dict:
    gaps = sorted(_gaps(stamps))
    return {
        "median_ms": 1000 * statistics.median(gaps),
        "min_ms": 1000 * gaps[0],
        "max_ms": 1000 * gaps[-1],
    }


def ssh_chain_hop(root: Path, steps: int) -> dict:
    """ms per hop of a chain of workers on host ``far`` (this machine through a local sshd).

    Baseline: the raw chain whose REP starts each raw pyzmq worker with
    ``ssh <the manager's options, its ControlPath> 127.0.0.1 python -m bench.raw worker``,
    over the connection the manager's chain left open.
    """
    if why := missing_sshd():
        return {"skipped": why}
    from nowcastkit import ssh
    from nowcastkit.config import load_config
    from nowcastkit.hosts import remote_host
    from nowcastkit.ssh_connections import control_path

    with sshd(root / "sshd") as options:
        folder = root / "ssh-chain"
        host = _host_entry(folder, **{"ssh host": "127.0.0.1", "ssh options": options})
        run = {"enabled hosts": {"far": host}}
        system = NowcastSystem(folder, bench={"steps": steps, "host": "far"}, run=run).start()
        try:
            stamps = _hops(system, steps, "far")
        finally:
            system.stop()
        entry = remote_host(load_config(system.path), "far")
        control = control_path(folder.absolute())  # the manager's: the same connection
        raw = RawSystem(root / "raw-ssh-chain")
        try:
            config = raw.folder / "raw-hops.txt.config.yaml"
            line = (
                shlex.join(["cd", str(REPO)])
                + " && exec "
                + shlex.join([sys.executable, "-m", "bench.raw", "worker", str(config)])
            )
            raw_stamps = raw.run_chain(
                steps, timeout=30 + 3 * steps, launch=ssh.ssh_argv(entry, line, control)
            )
        finally:
            raw.stop()
            subprocess.run(["ssh", *options, "-o", f"ControlPath={control}", "-O", "exit",
                            "127.0.0.1"], capture_output=True, timeout=10)  # fmt: skip
    manager, baseline = _summary(stamps), _summary(raw_stamps)
    return {
        "hop_ms": manager["median_ms"],
        "raw_hop_ms": baseline["median_ms"],
        "hop_range_ms": [manager["min_ms"], manager["max_ms"]],
        "raw_hop_range_ms": [baseline["min_ms"], baseline["max_ms"]],
        "hops": len(stamps) - 1,
    }


def slurm(root: Path, steps: int, runs: int, interval: float, measure: int,
          scale: float = 1.0) -> dict:  # fmt: skip
    """The chain of Slurm jobs and the poll load, on one test Slurm started for both."""
    if why := missing_slurm():
        return {"skipped": why}
    with slurm_cluster() as cluster:
        started = time.monotonic()
        chain = guarded(slurm_chain_hop, root, steps)
        chain["seconds"] = time.monotonic() - started
        started = time.monotonic()
        load = guarded(poll_load, root, cluster, runs, interval, measure, scale)
        load["seconds"] = time.monotonic() - started
        return {"chain": chain, "poll": load, "cluster_start_s": cluster.started_in}


def slurm_chain_hop(root: Path, steps: int) -> dict:
    """ms per hop of a chain of Slurm jobs (``launcher: slurm`` on the login node, here).

    Baselines: the raw chain whose REP submits each raw pyzmq worker with ``sbatch``
    (message to message: submit, scheduling, the job's start, its connect); and bare
    sbatch-to-start, a job that only writes the time it started.
    """
    folder = root / "slurm-chain"
    run = {"enabled hosts": {"hpc": _host_entry(folder, launcher="slurm")}}
    system = NowcastSystem(folder, bench={"steps": steps, "host": "hpc"}, run=run).start()
    try:
        stamps = _hops(system, steps, "hpc")
    finally:
        system.stop()
    raw = RawSystem(root / "raw-slurm-chain")
    try:
        config = raw.folder / "raw-hops.txt.config.yaml"
        script = raw.folder / "job.sh"
        worker = shlex.join([sys.executable, "-m", "bench.raw", "worker", str(config)])
        script.write_text(f"#!/bin/sh\nexec {worker}\n")
        launch = ["sbatch", "--parsable", "--no-requeue", "--job-name=raw-chain",
                  f"--output={raw.folder}/job-%j.log", "--open-mode=append",
                  f"--chdir={REPO}", str(script)]  # fmt: skip
        raw_stamps = raw.run_chain(steps, timeout=30 + 3 * steps, launch=launch)
    finally:
        raw.stop()
    starts = _sbatch_to_start(root / "sbatch-start", max(3, steps // 2))
    manager, baseline = _summary(stamps), _summary(raw_stamps)
    return {
        "hop_ms": manager["median_ms"],
        "raw_hop_ms": baseline["median_ms"],
        "sbatch_start_ms": 1000 * statistics.median(starts),
        "hop_range_ms": [manager["min_ms"], manager["max_ms"]],
        "raw_hop_range_ms": [baseline["min_ms"], baseline["max_ms"]],
        "hops": len(stamps) - 1,
    }


def _sbatch_to_start(folder: Path, runs: int) -> list[float]:
    """Seconds from running sbatch to the job's first command, one job at a time."""
    folder.mkdir(parents=True)
    times = []
    for i in range(runs):
        stamp = folder / f"started-{i}"
        started = time.time()
        subprocess.run(["sbatch", "--parsable", "--no-requeue", f"--output={folder}/%j.log",
                        "--wrap", f"date +%s.%N >{stamp}.new && mv {stamp}.new {stamp}"],
                       check=True, capture_output=True, timeout=30)  # fmt: skip
        deadline = time.monotonic() + 30
        while not stamp.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("a bare sbatch job did not start within 30 s")
            time.sleep(0.005)
        times.append(float(stamp.read_text()) - started)
    return times


def poll_load(
    root: Path, cluster, runs: int, interval: float, measure: int, scale: float = 1.0
) -> dict:
    """Queries a Slurm launcher makes per poll interval with *runs* jobs waiting.

    A real Supervisor in this process, on the test Slurm (2 CPUs: 2 jobs run, the rest
    pend for Resources or Priority and stay queued). The steady state begins once the
    quick looks after the last submit are past; then *measure* intervals are counted
    (``SlurmLauncher.queries``). *scale* < 1 shortens the looks after a submit in
    proportion (the quick run), so that the steady state comes sooner.
    """
    from nowcastkit import NextWorker
    from nowcastkit.config import load_config
    from nowcastkit.manager import cluster as cl
    from nowcastkit.manager.decide import Launch
    from nowcastkit.manager.supervisor import Supervisor

    folder = root / "poll-load"
    folder.mkdir(parents=True)
    (folder / "wait.py").write_text(WAIT_WORKER)
    config_dict = config_for(folder)
    config_dict["message registry"]["workers"]["wait"] = {"crash": "crashed"}
    config_dict["run"] = {"enabled hosts": {"hpc": _host_entry(
        folder, launcher="slurm", **{"poll interval": interval})}}  # fmt: skip
    config_dict["logging"]["root"]["level"] = "WARNING"
    (folder / "nowcast.yaml").write_text(yaml.safe_dump(config_dict))
    looks = cl.LOOKS_AFTER_SUBMIT
    cl.LOOKS_AFTER_SUBMIT = tuple(delay * scale for delay in looks)
    cwd = Path.cwd()
    try:
        os.chdir(folder)
        config = load_config(folder / "nowcast.yaml")
        supervisor = Supervisor(config, folder / "runs")
        launches = [Launch(f"wait{i:03d}", NextWorker("wait", [], "hpc")) for i in range(runs)]
        supervisor.start(launches)
        launcher = supervisor.remotes["hpc"]
        submitted = None
        marks: list[tuple[float, int]] = []
        steady_from = steady_to = None
        while True:
            now = time.monotonic()
            supervisor.tick(now)
            if submitted is None and all(job.job_id for job in launcher.jobs.values()):
                submitted = now
                steady_from = now + max(cl.LOOKS_AFTER_SUBMIT) + 1.0
                steady_to = steady_from + measure * interval
            if not marks or marks[-1][1] != launcher.queries:
                marks.append((now, launcher.queries))
            if steady_to is not None and now >= steady_to:
                break
            wake = supervisor.wake_at(now)
            time.sleep(min(0.05, max(0.001, (wake or now + 0.05) - now)))
        queue = cluster.run("squeue", "-h", "-o", "%T|%r").stdout.split()
        states = [job.state for job in launcher.jobs.values()]
    finally:
        cl.LOOKS_AFTER_SUBMIT = looks
        os.chdir(cwd)

    # Each mark is a query started: its time (to the loop's 50 ms) and the count so far.
    steady = [at for at, n in marks[1:] if steady_from < at <= steady_to]
    # The rate over the queries seen, so that a window's edge falling just before or
    # after one does not count it in or out: intervals / (mean time between queries).
    rate = (len(steady) - 1) * interval / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
    return {
        "runs": runs,
        "interval_s": interval,
        "looks_s": [delay * scale for delay in looks],
        "queries_per_interval": rate,
        "steady_queries": len(steady),
        "steady_intervals": measure,
        "queries_before_steady": sum(at <= steady_from for at, n in marks[1:]),
        "pending": sum(line.startswith("PENDING") for line in queue),
        "running": sum(line.startswith("RUNNING") for line in queue),
        "pending_reasons": sorted({line.split("|")[1] for line in queue if "PENDING" in line}),
        "launcher_states": sorted(set(states)),
    }
