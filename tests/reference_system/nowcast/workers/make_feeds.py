"""Make feeds worker: write a day's feed of the forcing for downstream users."""
import logging
import os
from pathlib import Path

import arrow
from nemo_nowcast import NowcastWorker

from nowcast import lib

NAME = "make_feeds"
logger = logging.getLogger(NAME)


def main():
    worker = NowcastWorker(NAME, description=__doc__)
    worker.init_cli()
    worker.cli.add_date_option(
        "--run-date", default=arrow.now().floor("day"), help="Date of the feed."
    )
    worker.run(make_feeds, success, failure)
    return worker


def success(parsed_args):
    logger.info(f"feed for {parsed_args.run_date.format('YYYY-MM-DD')} made")
    return "success"


def failure(parsed_args):
    logger.critical("feed failed")
    return "failure"


def make_feeds(parsed_args, config, *args):
    feeds = Path(config["feeds"]["storage path"])
    lib.mkdir(feeds, logger)
    feed = feeds / f"forcing_{parsed_args.run_date.format('YYYYMMDD')}.atom"
    feed.write_text("<feed xmlns='http://www.w3.org/2005/Atom'/>\n")
    os.chmod(feed, int(lib.FILEPERMS))
    return {"feed": os.fspath(feed)}


if __name__ == "__main__":
    main()  # pragma: no cover
