"""``nowcastkit logs``: a run's log here, over ssh and on a Slurm login node; ``--follow``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import child_env, wait_for
from remote_runs import chain_across, pids_of, serve_across
from sshd_server import free_port

from nowcastkit import store as st
from nowcastkit.config import load_config
from tests.integration.operator_tools import history, nowcastkit, run_chain

pytestmark = pytest.mark.timeout(90)


def last(text: str, lines: int) -> str:
    return "".join(text.splitlines(keepends=True)[-lines:])


def launched(system, *args: str, host: str = "localhost") -> str:
    reply = system.control({"command": "launch", "worker": "workers.sleep", "args": list(args),
                            "host": host})  # fmt: skip
    assert reply["ok"], reply
    return reply["run"]


def exited(system, run_id: str) -> dict:
    """The run once the store has its end and its exit: its log is written in full."""
    return wait_for(
        lambda: next((r for r in history(system) if r["run"] == run_id and r["finished"]
                      and r["exit status"] is not None), None),
        f"run {run_id} to exit", 40,
    )  # fmt: skip


def follow(system, run_id: str) -> subprocess.Popen:
    """``nowcastkit logs --follow`` as a terminal would run it: SIGINT at its default, also
    where the suite itself runs in the background (.ci/run), which ignores SIGINT."""
    return subprocess.Popen(
        [sys.executable, "-m", "nowcastkit.cli", "logs", "--follow", str(system.config_path),
         run_id],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=system.folder,
        env=child_env(), preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


def tails_of(path: Path) -> list[int]:
    """The processes here running ``tail`` on *path*: the "remote" ones."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0") if proc.name.isdigit() else []
        except OSError:
            continue
        if argv and argv[0].endswith(b"tail") and str(path).encode() in argv:
            found.append(int(proc.name))
    return found


def test_the_end_of_a_local_runs_log_by_its_id_or_the_start_of_it(running_system):
    _, sleep = run_chain(running_system)
    text = Path(exited(running_system, sleep["run"])["log"]).read_text()
    result = nowcastkit(running_system, "logs", sleep["run"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == last(text, 20) and "slept for 0 seconds" in result.stdout
    two = nowcastkit(running_system, "logs", sleep["run"][:6], options=("--lines", "2"))
    assert two.returncode == 0, two.stderr
    assert two.stdout == last(text, 2) and len(two.stdout.splitlines()) == 2
    bad = nowcastkit(running_system, "logs", sleep["run"], options=("--lines", "-1"))
    assert bad.returncode == 2 and "--lines: got '-1', expected a number" in bad.stderr


def test_a_run_that_is_none_or_more_than_one_or_has_no_log_is_one_line_and_exit_1(toy_system):
    path = st.state_paths(load_config(toy_system.config_path))[0]
    none_yet = nowcastkit(toy_system, "logs", "aa")
    assert (none_yet.returncode, none_yet.stderr) == (
        1, "nowcastkit logs: no run 'aa': no manager has made its store yet\n")  # fmt: skip
    store = st.open_store(path)
    with st.transaction(store):
        for i, (run_id, module, log) in enumerate([
            ("aa11", "workers.sleep", ""), ("aa22", "workers.sleep", ""),
            ("bb33", st.BY_HAND, ""), ("cc44", "workers.sleep", str(toy_system.folder / "gone")),
        ]):  # fmt: skip
            st.add_run(store, st.Run(run_id, "sleep", module, launched=1e9 + i, log_path=log))
    store.conn.close()

    def fails(run: str, *options: str) -> str:
        result = nowcastkit(toy_system, "logs", run, options=options)
        assert result.returncode == 1 and result.stdout == "", result
        return result.stderr

    assert fails("zz") == f"nowcastkit logs: no run 'zz' in {path}\n"
    assert (
        fails("aa") == "nowcastkit logs: run 'aa' is ambiguous: it begins the ids of aa22, aa11\n"
    )
    assert fails("bb") == (
        "nowcastkit logs: run bb33 of sleep was started by hand: it has no log file\n")  # fmt: skip
    assert fails("cc44") == f"nowcastkit logs: no log file {toy_system.folder / 'gone'}\n"
    assert (
        fails("aa1") == f"nowcastkit logs: no log file {path.parent / 'runs' / 'sleep-aa11.log'}\n"
    )


def test_follow_prints_a_local_run_as_it_goes_and_stops_once_it_has_ended(running_system):
    run_id = launched(running_system, "--sleep-time", "3")
    proc = follow(running_system, run_id)
    first = proc.stdout.readline()
    assert "running in process" in first
    assert not next(r for r in history(running_system) if r["run"] == run_id)["finished"]
    rest, err = proc.stdout.read(), proc.stderr.read()  # not communicate: readline buffered
    assert proc.wait(10) == 0, err
    assert err == f"nowcastkit logs: run {run_id} has ended: success\n"
    assert first + rest == Path(exited(running_system, run_id)["log"]).read_text()
    assert "slept for 3 seconds" in rest


def test_ctrl_c_stops_following_with_exit_status_130(running_system):
    run_id = launched(running_system, "--sleep-time", "60")
    proc = follow(running_system, run_id)
    try:
        assert "running in process" in proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        assert (proc.returncode, err) == (130, "")
    finally:
        pid = next(r for r in history(running_system) if r["run"] == run_id)["pid"]
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(pid, signal.SIGKILL)


def test_a_remote_runs_log_over_ssh_followed_until_it_ends_or_ctrl_c(toy_system, sshd):
    entry = {"ssh host": "127.0.0.1", "ssh options": sshd.options}
    _, sleep = chain_across(toy_system, "far", entry)
    exited(toy_system, sleep["run"])
    remote_runs = toy_system.folder / "remote runs"
    result = nowcastkit(toy_system, "logs", sleep["run"][:8])
    assert result.returncode == 0, result.stderr
    text = (remote_runs / f"{sleep['run']}.log").read_text()
    assert result.stdout == last(text, 20) and "slept for 0 seconds" in text

    run_id = launched(toy_system, "--sleep-time", "3", host="far")
    proc = follow(toy_system, run_id)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert err == f"nowcastkit logs: run {run_id} has ended: success\n"
    assert out == (remote_runs / f"{run_id}.log").read_text() and "slept for 3 seconds" in out
    wait_for(lambda: not tails_of(remote_runs / f"{run_id}.log"), "the remote tail to end")

    run_id = launched(toy_system, "--sleep-time", "60", host="far")
    try:
        proc = follow(toy_system, run_id)
        assert "running in process" in proc.stdout.readline()
        assert tails_of(remote_runs / f"{run_id}.log")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        assert (proc.returncode, err) == (130, "")
        wait_for(lambda: not tails_of(remote_runs / f"{run_id}.log"), "the remote tail to end")
    finally:
        for pid in pids_of(run_id):  # the "remote" run, this machine's processes
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_remote_run_not_started_yet_is_waited_for_and_ssh_failures_are_one_line(toy_system, sshd):
    serve_across(toy_system, "far", {"ssh host": "127.0.0.1", "ssh options": sshd.options})
    path = st.state_paths(load_config(toy_system.config_path))[0]
    store = st.open_store(path)
    with st.transaction(store):
        for i, run_id in enumerate(["dd55", "ee66", "ff77"]):
            st.add_run(store, st.Run(run_id, "sleep", "workers.sleep", host="far", launched=i))
        st.set_run_pid(store, "dd55", 1, {"launcher": "ssh", "log": "far:/nowhere/dd55.log"})
        st.finish_run(store, "ff77", "launch failed")

    def fails(run_id: str, *options: str) -> str:
        result = nowcastkit(toy_system, "logs", run_id, options=options)
        assert result.returncode == 1 and result.stdout == "", result
        return result.stderr

    assert fails("ee66") == (
        "nowcastkit logs: run ee66 has not started on far yet: where its log will be is not known\n"
    )
    assert fails("ff77", "--follow") == (
        "nowcastkit logs: run ff77 ended before it started on far: it has no log\n")  # fmt: skip
    # Followed before its launcher has said where its log is: it is waited for.
    proc = follow(toy_system, "ee66")
    log = toy_system.folder / "remote runs" / "ee66.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text("a line from far\n")
    with st.transaction(store):
        st.set_run_pid(store, "ee66", 1, {"launcher": "ssh", "log": f"far:{log}"})
    wait_for(lambda: tails_of(log), "the remote tail")
    with st.transaction(store):
        st.finish_run(store, "ee66", "success", exit_status=0)
    store.conn.close()
    out, err = proc.communicate(timeout=20)
    assert (proc.returncode, out) == (0, "a line from far\n"), err

    assert fails("dd55") == (
        "nowcastkit logs: far: tail: cannot open '/nowhere/dd55.log' for reading: "
        "No such file or directory\n"
    )
    port = free_port()
    options = [str(port) if o == str(sshd.port) else o for o in sshd.options]
    toy_system.config["run"]["enabled hosts"]["far"]["ssh options"] = options
    toy_system.write_config()
    assert fails("dd55") == (
        f"nowcastkit logs: far: ssh: connect to host 127.0.0.1 port {port}: Connection refused\n"
    )


def test_a_slurm_runs_log_is_read_here_on_the_login_node(slurm, toy_system):
    _, sleep = chain_across(toy_system, "hpc", {"launcher": "slurm"})
    exited(toy_system, sleep["run"])
    result = nowcastkit(toy_system, "logs", sleep["run"], options=("--lines", "3"))
    assert result.returncode == 0, result.stderr
    text = (toy_system.folder / "remote runs" / f"sleep-{sleep['run']}.log").read_text()
    assert result.stdout == last(text, 3) and len(result.stdout.splitlines()) == 3
