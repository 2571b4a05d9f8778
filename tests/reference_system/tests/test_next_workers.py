"""Unit tests for the next_workers module."""
import textwrap
from pathlib import Path

import nemo_nowcast
import pytest
from nemo_nowcast import Message, NextWorker

from nowcast import next_workers


@pytest.fixture
def config(base_config):
    """:py:class:`nemo_nowcast.Config` instance from YAML fragment for these tests."""
    config_file = Path(base_config.file)
    with config_file.open("at") as f:
        f.write(
            textwrap.dedent(
                """\
                message registry:
                  workers:
                    download_forcing:
                      success: forcing file downloaded
                      failure: forcing file download failed
                      crash: download_forcing worker crashed
                """
            )
        )
    config_ = nemo_nowcast.Config()
    config_.load(config_file)
    return config_


@pytest.fixture
def checklist():
    return {}


class TestAfterDownloadForcing:
    @pytest.mark.parametrize("msg_type", ["crash", "failure"])
    def test_no_next_worker_msg_types(self, msg_type, config, checklist):
        workers = next_workers.after_download_forcing(
            Message(source="download_forcing", type=msg_type), config, checklist
        )
        assert workers == []

    def test_success_launches_plots_and_feeds_in_a_race(self, config, checklist):
        msg = Message(source="download_forcing", type="success",
                      payload={"2026-12-01": "/results/forcing_20261201.nc"})
        workers, race_condition_workers = next_workers.after_download_forcing(
            msg, config, checklist
        )
        assert workers == [
            NextWorker("nowcast.workers.make_plots", args=["forcing", "--run-date", "2026-12-01"],
                       host="localhost"),
            NextWorker("nowcast.workers.make_feeds", args=["--run-date", "2026-12-01"]),
        ]
        assert race_condition_workers == {"make_plots", "make_feeds"}


class TestAfterMakePlots:
    def test_success_clears_the_checklist(self, config, checklist, monkeypatch):
        monkeypatch.setitem(config, "figures", {"storage path": "/results/figures"})
        workers = next_workers.after_make_plots(
            Message(source="make_plots", type="success"), config, checklist
        )
        assert workers == [NextWorker("nemo_nowcast.workers.clear_checklist", args=[])]


class TestAfterClearChecklist:
    def test_success_rotates_logs(self, config, checklist):
        config["checklist file"] = "/results/nowcast_checklist.yaml"
        workers = next_workers.after_clear_checklist(
            Message(source="clear_checklist", type="success"), config, checklist
        )
        assert workers == [NextWorker("nemo_nowcast.workers.rotate_logs")]
