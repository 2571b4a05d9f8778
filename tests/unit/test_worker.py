"""The worker API that runs in-process: NextWorker, the command line, tell_manager's checks."""

from __future__ import annotations

import argparse
import subprocess
import sys

import arrow
import pytest
import yaml
from conftest import base_config, child_env

from nowcastkit import (
    CommandLineInterface,
    ConfigError,
    MessageError,
    NextWorker,
    NowcastWorker,
)
from nowcastkit.config import load_config


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "nowcast.yaml"
    path.write_text(yaml.safe_dump(base_config(tmp_path)))
    return load_config(path)


def test_next_workers_compare_by_value():
    assert NextWorker("workers.sleep", args=["--sleep-time", "0"]) == NextWorker(
        "workers.sleep", ["--sleep-time", "0"], "localhost"
    )
    assert NextWorker("workers.sleep") != NextWorker("workers.sleep", args=["--debug"])
    assert NextWorker("workers.sleep") != NextWorker("workers.sleep", host="hpc")
    assert NextWorker("workers.sleep").name == "sleep"


@pytest.mark.parametrize("args", ["--debug", None, 5])
def test_next_worker_args_must_be_a_list(args):
    with pytest.raises(TypeError, match="expected a list of strings"):
        NextWorker("workers.sleep", args=args)


def test_launch_command_is_config_python_module_config_file_args(config):
    worker = NextWorker("workers.sleep", args=["--sleep-time", "0"])
    assert worker.command(config) == [
        config["python"],
        "-m",
        "workers.sleep",
        str(config.file),
        "--sleep-time",
        "0",
    ]


def test_remote_host_without_config_is_a_config_error(config):
    with pytest.raises(ConfigError, match=r"run.enabled hosts.hpc: missing python"):
        NextWorker("workers.sleep", host="hpc").command(config)


def test_date_option_parses_yyyy_mm_dd_to_an_arrow_date():
    worker = NowcastWorker("sleep")
    worker.init_cli()
    cli = worker.cli
    today = arrow.now().floor("day")
    cli.add_date_option("--run-date", default=today, help="Date to run for.")
    assert cli.parse_args(["nowcast.yaml"]).run_date == today
    args = cli.parse_args(["nowcast.yaml", "--run-date", "2024-02-29", "--debug"])
    assert args.run_date == arrow.get(2024, 2, 29)
    assert args.config_file == "nowcast.yaml"
    assert args.debug is True
    assert f"Defaults to {today:YYYY-MM-DD}" in " ".join(cli.parser.format_help().split())


@pytest.mark.parametrize("text", ["2024-13-01", "29/02/2024", "tomorrow"])
def test_date_option_rejects_other_formats(text, capsys):
    cli = CommandLineInterface("sleep")
    cli.add_date_option("--run-date", default=arrow.now().floor("day"), help="Date.")
    with pytest.raises(SystemExit) as caught:
        cli.parse_args(["nowcast.yaml", "--run-date", text])
    assert caught.value.code == 2
    assert "please use YYYY-MM-DD" in capsys.readouterr().err


@pytest.mark.parametrize("columns", ["40", "100", "", "wide"])
def test_worker_help_wraps_at_the_terminal_width_as_argparse_does(columns, monkeypatch):
    monkeypatch.setenv("COLUMNS", columns)
    cli = CommandLineInterface("sleep", description="Sleep for a while, then say so. " * 4)
    cli.add_argument("--sleep-time", type=int, default=5, help="Seconds to sleep. " * 5)
    plain = argparse.ArgumentParser(prog="python -m workers.sleep", description=cli.description)
    plain.add_argument("config_file", help="path of the system's nowcast.yaml")
    plain.add_argument("--sleep-time", type=int, default=5, help="Seconds to sleep. " * 5)
    assert cli.parser.format_help() == plain.format_help()


def test_tell_manager_refuses_an_unregistered_type(config):
    worker = NowcastWorker("sleep")
    worker.config = config
    with pytest.raises(MessageError, match="message type 'bogus' is not registered"):
        worker.tell_manager("bogus")
    with pytest.raises(MessageError, match="'checklist key' is not registered"):
        worker.tell_manager("checklist key")


def test_worker_cli_help_names_the_module():
    result = subprocess.run(
        [sys.executable, "-m", "workers.sleep", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env=child_env(),
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m workers.sleep")
    assert "--sleep-time" in result.stdout
