"""Unit tests for the download_forcing worker."""
import http.server
import logging
import os
import stat
import textwrap
import threading
from pathlib import Path
from types import SimpleNamespace

import arrow
import nemo_nowcast
import pytest

from nowcast import lib
from nowcast.workers import download_forcing


@pytest.fixture
def forcing_server():
    """A forcing server on loopback that answers 503 once, then the file."""
    asked = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            if len(asked) == 1:
                self.send_error(503)
                return
            body = b"" if "empty" in self.path else b"CDF\x01forcing"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_port}", asked=asked)
    server.shutdown()
    server.server_close()


@pytest.fixture
def config(base_config, forcing_server, tmp_path):
    config_file = Path(base_config.file)
    with config_file.open("at") as f:
        f.write(
            textwrap.dedent(
                f"""\
                forcing:
                  url: {forcing_server.url}/forcing/{{date}}.nc
                  dest dir: {tmp_path / "forcing"}
                  retry time limit: 10
                """
            )
        )
    config_ = nemo_nowcast.Config()
    config_.load(config_file)
    return config_


@pytest.fixture
def mock_worker(mock_nowcast_worker, monkeypatch):
    monkeypatch.setattr(download_forcing, "NowcastWorker", mock_nowcast_worker)


class TestMain:
    def test_instantiate_worker(self, mock_worker):
        worker = download_forcing.main()
        assert worker.name == "download_forcing"
        assert worker.description.startswith("Download forcing worker:")

    def test_add_run_date_option(self, mock_worker):
        worker = download_forcing.main()
        assert worker.cli.parser._actions[2].dest == "run_date"
        expected = nemo_nowcast.cli.CommandLineInterface.arrow_date
        assert worker.cli.parser._actions[2].type == expected
        assert worker.cli.parser._actions[2].default == arrow.now().floor("day")


def test_file_perms_are_a_mode():
    assert int(lib.FILEPERMS) == 0o664
    assert int(lib.DIRPERMS) == 0o775


class TestDownloadForcing:
    def test_download_waits_out_the_server_then_writes_the_file(
        self, config, forcing_server, caplog
    ):
        parsed_args = SimpleNamespace(run_date=arrow.get("2026-12-01"))
        caplog.set_level(logging.DEBUG)
        checklist = download_forcing.download_forcing(parsed_args, config)
        filepath = Path(config["forcing"]["dest dir"]) / "forcing_20261201.nc"
        assert checklist == {"2026-12-01": os.fspath(filepath)}
        assert filepath.read_bytes() == b"CDF\x01forcing"
        assert stat.S_IMODE(filepath.stat().st_mode) == 0o664
        assert forcing_server.asked == ["/forcing/20261201.nc"] * 2

    def test_empty_file_is_a_worker_error(self, config, monkeypatch):
        monkeypatch.setitem(config["forcing"], "url", config["forcing"]["url"] + "?empty")
        parsed_args = SimpleNamespace(run_date=arrow.get("2026-12-01"))
        with pytest.raises(nemo_nowcast.WorkerError):
            download_forcing.download_forcing(parsed_args, config)
