"""Sleep worker: sleep for a number of seconds, then report success.

Useful for trying out a system and for testing it.
"""

import logging
import time

from nowcastkit import NowcastWorker

NAME = "sleep"
logger = logging.getLogger(NAME)


def main() -> None:
    worker = NowcastWorker(NAME, description=__doc__)
    worker.init_cli()
    worker.cli.add_argument(
        "--sleep-time", type=int, default=5, help="number of seconds to sleep (default 5)"
    )
    worker.run(sleep, success, failure)


def success(parsed_args) -> str:
    logger.info("slept for %d seconds", parsed_args.sleep_time)
    return "success"


def failure(parsed_args) -> str:
    logger.critical("failed to sleep for %d seconds", parsed_args.sleep_time)
    return "failure"


def sleep(parsed_args, config, tell_manager) -> dict:
    time.sleep(parsed_args.sleep_time)
    return {"sleep time": parsed_args.sleep_time}


if __name__ == "__main__":
    main()
