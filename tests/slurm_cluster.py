"""A real single-node Slurm (munged, slurmctld, slurmd) in a folder, for the Slurm tests.

Everything the daemons keep lives in the folder: munge key and socket, slurm.conf, state,
spool, pid and log files, the job completion file. The node is this machine under its short
host name, with all of its CPUs, in a partition ``debug``; the daemons run as root.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import attrs
from conftest import wait_for

MUNGED = "/usr/sbin/munged"
SLURMCTLD = "/usr/sbin/slurmctld"
SLURMD = "/usr/sbin/slurmd"
PROGRAMS = (MUNGED, SLURMCTLD, SLURMD, "/usr/bin/sbatch", "/usr/bin/squeue", "/usr/bin/sinfo")


def missing_programs() -> list[str]:
    return [program for program in PROGRAMS if not os.access(program, os.X_OK)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


@attrs.define(eq=False)
class Daemon:
    """One daemon run in the foreground, its output in a file; stopped by its pid."""

    name: str
    popen: subprocess.Popen
    out_path: Path

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        return self.popen.returncode


@attrs.define(eq=False)
class SlurmCluster:
    """A single-node Slurm in *folder*; ``env`` is the environment its commands need."""

    folder: Path
    min_job_age: int = 300
    slurmd_timeout: int = 300
    extra_config: list[str] = attrs.field(factory=list)
    cpus: int = attrs.field(factory=lambda: os.cpu_count() or 1)
    node: str = attrs.field(factory=lambda: socket.gethostname().split(".")[0])
    ctld_port: int = attrs.field(factory=free_port)
    slurmd_port: int = attrs.field(factory=free_port)
    munged: Daemon | None = None
    slurmctld: Daemon | None = None
    slurmd: Daemon | None = None
    started_in: float | None = None

    @property
    def conf_path(self) -> Path:
        return self.folder / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self.folder / "munge" / "munge.socket"

    @property
    def jobcomp_path(self) -> Path:
        return self.folder / "jobcomp.txt"

    @property
    def spool(self) -> Path:
        return self.folder / "spool"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf_path)}

    def config_text(self) -> str:
        f = self.folder
        lines = [
            "ClusterName=nowcastkit",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={f / 'state'}",
            f"SlurmdSpoolDir={self.spool}",
            f"SlurmctldPidFile={f / 'slurmctld.pid'}",
            f"SlurmdPidFile={f / 'slurmd.pid'}",
            f"SlurmctldLogFile={f / 'slurmctld.log'}",
            f"SlurmdLogFile={f / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={self.jobcomp_path}",
            "MpiDefault=none",
            "MailProg=/bin/true",
            # Slurm's default delays the scheduling of a batch job up to 3 s after submission.
            "SchedulerParameters=batch_sched_delay=0",
            "ReturnToService=2",
            f"MinJobAge={self.min_job_age}",
            f"SlurmdTimeout={self.slurmd_timeout}",
            *self.extra_config,
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN",
            f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
        ]
        return "\n".join(lines) + "\n"

    def run(self, *argv: str, input: str | None = None, timeout: float = 30):
        """Run one Slurm command against this cluster; its CompletedProcess, text."""
        return subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, env=self.env
        )

    def _spawn(self, name: str, argv: list[str]) -> Daemon:
        out_path = self.folder / f"{name}.out"
        with open(out_path, "ab") as out:
            popen = subprocess.Popen(
                argv,
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        return Daemon(name, popen, out_path)

    def start(self, timeout: float = 30.0) -> SlurmCluster:
        """Start munged, slurmctld and slurmd; return once the node is idle."""
        began = time.monotonic()
        os.chmod(self.folder, 0o755)
        for name in ("munge", "state", "spool"):
            (self.folder / name).mkdir(mode=0o755, exist_ok=True)
        key = self.folder / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
            key.chmod(0o400)
        self.conf_path.write_text(self.config_text())
        munge = self.folder / "munge"
        self.munged = self._spawn("munged", [
            MUNGED, "-F", f"--socket={self.munge_socket}", f"--key-file={key}",
            f"--pid-file={munge / 'munged.pid'}", f"--log-file={munge / 'munged.log'}",
            f"--seed-file={munge / 'munged.seed'}",
        ])  # fmt: skip
        wait_for(lambda: self._up(self.munged, self.munge_socket.exists), "munged socket", 10)
        self.start_controller(timeout)
        self.start_slurmd(timeout)
        self.started_in = time.monotonic() - began
        return self

    def _up(self, daemon: Daemon, ready) -> bool:
        if not daemon.running():
            raise AssertionError(f"{daemon.name} exited {daemon.popen.returncode}:\n"
                                 f"{daemon.output()}\n{self._logs()}")  # fmt: skip
        return ready()

    def _logs(self) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.folder / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def start_controller(self, timeout: float = 30.0) -> None:
        """Start slurmctld, keeping the state it saved; wait until it accepts connections."""
        assert self.slurmctld is None or not self.slurmctld.running(), "slurmctld is running"
        self.slurmctld = self._spawn("slurmctld", [SLURMCTLD, "-D", "-f", str(self.conf_path)])
        wait_for(lambda: self._up(self.slurmctld, lambda: _accepts(self.ctld_port)),
                 "slurmctld listening", timeout)  # fmt: skip
        if self.slurmd is not None and self.slurmd.running():
            self.wait_idle_or_busy(timeout)

    def stop_controller(self) -> int:
        """Stop slurmctld (SIGTERM: it saves its state); jobs and slurmd go on."""
        assert self.slurmctld is not None
        return self.slurmctld.stop()

    def start_slurmd(self, timeout: float = 30.0) -> None:
        """Start slurmd (it takes back the job steps still running); wait for the node."""
        assert self.slurmd is None or not self.slurmd.running(), "slurmd is running"
        self.slurmd = self._spawn("slurmd", [SLURMD, "-D", "-f", str(self.conf_path),
                                             "-N", self.node])  # fmt: skip
        self.wait_idle_or_busy(timeout)

    def kill_slurmd(self) -> int:
        """SIGKILL slurmd, as a crash would; its job steps keep running."""
        assert self.slurmd is not None
        return self.slurmd.stop(signal.SIGKILL)

    def node_state(self) -> str:
        done = self.run("sinfo", "-h", "-o", "%T", timeout=15)
        return done.stdout.strip() if done.returncode == 0 else ""

    def wait_idle_or_busy(self, timeout: float = 30.0) -> str:
        """Wait until the node is up: idle, or allocated/mixed when jobs survived a restart."""
        assert self.slurmd is not None and self.slurmctld is not None

        def up():
            self._up(self.slurmctld, lambda: True)
            return self._up(self.slurmd, self.node_state) in ("idle", "allocated", "mixed")

        wait_for(up, f"node {self.node} idle", timeout)
        return self.node_state()

    def stop(self) -> None:
        """Cancel the jobs, stop each daemon by its pid and wait; kill what jobs left behind."""
        if self.slurmctld is not None and self.slurmctld.running():
            self.run("scancel", "--user=root", timeout=15)
            deadline = time.monotonic() + 10
            while self.job_processes() and time.monotonic() < deadline:
                time.sleep(0.05)
        for daemon in (self.slurmd, self.slurmctld):
            if daemon is not None:
                daemon.stop()
        for pid in self.job_processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.munged is not None:
            self.munged.stop()

    def job_processes(self) -> list[int]:
        """This cluster's slurmstepds, job processes and every process under them.

        Found by the SLURM_CONF that slurmd hands down: slurmstepd runs in a session of its
        own and outlives slurmd, and with proctrack/linuxproc a job's child whose parent
        died escapes the step (a ``kill -9`` of the batch shell leaves its ``sleep``).
        """
        mine = f"SLURM_CONF={self.conf_path}".encode()
        parents: dict[int, int] = {}
        found: list[int] = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
                environ = (entry / "environ").read_bytes().split(b"\0")
            except (OSError, ValueError, IndexError):
                continue
            stepd = stat.split(" (", 1)[1].startswith("slurmstepd")
            job = any(var.startswith(b"SLURM_JOB_ID=") for var in environ)
            if mine in environ and (stepd or job):
                found.append(int(entry.name))
        for pid in found:  # grows as it goes: the descendants, breadth first
            found.extend(
                child for child, parent in parents.items() if parent == pid and child not in found
            )
        return found


def start_cluster(folder: Path, **options) -> SlurmCluster:
    """A started SlurmCluster in *folder* (made 0755); *options* as SlurmCluster takes."""
    folder.mkdir(parents=True, exist_ok=True)
    cluster = SlurmCluster(folder, **options)
    try:
        return cluster.start()
    except BaseException:
        cluster.stop()
        raise
