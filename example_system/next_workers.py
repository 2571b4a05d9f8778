"""The toy system's flow: which workers to launch when a worker finishes.

Each ``after_<worker>(msg, config, checklist)`` returns the workers to launch
for the message type the worker sent. The manager re-reads this file when it
changes, so an edit takes effect on the next message.
"""

from nowcastkit import NextWorker


def after_sleep(msg, config, checklist):
    next_workers = {
        "crash": [],
        "failure": [],
        "success": [],
    }
    return next_workers[msg.type]


def after_awaken(msg, config, checklist):
    next_workers = {
        "crash": [],
        "failure": [],
        "success": [],
    }
    return next_workers[msg.type]


def after_rotate_logs(msg, config, checklist):
    next_workers = {
        "crash": [],
        "failure": [],
        "success": [],
    }
    return next_workers[msg.type]


def after_clear_checklist(msg, config, checklist):
    next_workers = {
        "crash": [],
        "failure": [],
        "success": [],
    }
    return next_workers[msg.type]


__all__ = [
    "NextWorker",
    "after_awaken",
    "after_clear_checklist",
    "after_rotate_logs",
    "after_sleep",
]
