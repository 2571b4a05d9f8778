"""Clear checklist worker: ask the manager to clear the system checklist.

The manager writes the checklist to the ``checklist`` logger's file, then
empties it, before it replies.
"""

import logging

from nowcastkit import NowcastWorker, WorkerError

NAME = "clear_checklist"
logger = logging.getLogger(NAME)


def main() -> None:
    worker = NowcastWorker(NAME, description=__doc__)
    worker.init_cli()
    worker.run(clear_checklist, success, failure)


def success(parsed_args) -> str:
    logger.info("system checklist cleared")
    return "success"


def failure(parsed_args) -> str:
    logger.critical("failed to clear system checklist")
    return "failure"


def clear_checklist(parsed_args, config, tell_manager) -> None:
    logger.info("requesting that manager clear system checklist")
    reply = tell_manager("clear checklist")
    # No reply means --debug: nothing was sent.
    if reply is not None and reply.type != "checklist cleared":
        raise WorkerError(f"manager did not clear the checklist: ({reply.type}) {reply.payload}")


if __name__ == "__main__":
    main()
