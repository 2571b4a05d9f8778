"""Awaken worker: report that the system is awake, typically after the sleep worker."""

import logging
import time

from nowcastkit import NowcastWorker

NAME = "awaken"
logger = logging.getLogger(NAME)


def main() -> None:
    worker = NowcastWorker(NAME, description=__doc__)
    worker.init_cli()
    worker.run(awaken, success, failure)


def success(parsed_args) -> str:
    logger.info("awoke")
    return "success"


def failure(parsed_args) -> str:
    logger.critical("failed to awaken")
    return "failure"


def awaken(parsed_args, config, tell_manager) -> dict:
    return {"awoke at": time.strftime("%Y-%m-%d %H:%M:%S")}


if __name__ == "__main__":
    main()
