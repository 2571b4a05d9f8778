"""Download forcing worker: get a day's forcing file from the forcing server,
waiting out a server that is not ready yet.
"""
import logging
import os
from pathlib import Path

import arrow
import requests
from nemo_nowcast import NowcastWorker, WorkerError
from nemo_nowcast.worker import get_web_data

from nowcast import lib

NAME = "download_forcing"
logger = logging.getLogger(NAME)


def main():
    """Set up and run the worker.

    For command-line usage see:

    :command:`python -m nowcast.workers.download_forcing --help`
    """
    worker = NowcastWorker(NAME, description=__doc__)
    worker.init_cli()
    worker.cli.add_date_option(
        "--run-date",
        default=arrow.now().floor("day"),
        help="Date of the forcing file to download.",
    )
    worker.run(download_forcing, success, failure)
    return worker


def success(parsed_args):
    logger.info(f"{parsed_args.run_date.format('YYYY-MM-DD')} forcing downloaded")
    return "success"


def failure(parsed_args):
    logger.critical(f"{parsed_args.run_date.format('YYYY-MM-DD')} forcing download failed")
    return "failure"


def download_forcing(parsed_args, config, *args):
    run_date = parsed_args.run_date
    forcing = config["forcing"]
    url = forcing["url"].format(date=run_date.format("YYYYMMDD"))
    dest_dir = Path(forcing["dest dir"])
    lib.mkdir(dest_dir, logger)
    filepath = dest_dir / f"forcing_{run_date.format('YYYYMMDD')}.nc"
    with requests.Session() as session:
        get_web_data(
            url, NAME, filepath, session=session,
            wait_exponential_max=forcing["retry time limit"],
        )
    if filepath.stat().st_size == 0:
        logger.critical(f"empty forcing file: {filepath}")
        raise WorkerError
    os.chmod(filepath, int(lib.FILEPERMS))
    logger.debug(f"downloaded {url} to {filepath}")
    return {run_date.format("YYYY-MM-DD"): os.fspath(filepath)}


if __name__ == "__main__":
    main()  # pragma: no cover
