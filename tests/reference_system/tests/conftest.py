"""Fixtures for the system's test suite."""
import textwrap

import nemo_nowcast
import pytest


@pytest.fixture()
def base_config(tmp_path):
    """:py:class:`nemo_nowcast.Config` instance from the items a Config requires."""
    config_file = tmp_path / "nowcast.yaml"
    config_file.write_text(
        textwrap.dedent(
            """\
            # Items required by the Config instance
            checklist file: nowcast_checklist.yaml
            python: python
            logging:
              handlers: []
            """
        )
    )
    config_ = nemo_nowcast.Config()
    config_.load(config_file)
    return config_


@pytest.fixture()
def mock_nowcast_worker():
    """A NowcastWorker stand-in whose run() does nothing, to test a worker's main()."""

    class MockNowcastWorker:
        def __init__(self, name, description, package="nowcast.workers"):
            self.name = name
            self.description = description
            self.package = package
            self.cli = None

        def init_cli(self):
            self.cli = nemo_nowcast.cli.CommandLineInterface(
                self.name, package=self.package, description=self.description
            )
            self.cli.build_parser()

        def run(self, worker_func, success, failure):
            pass

    return MockNowcastWorker
