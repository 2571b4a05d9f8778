"""Functions to calculate lists of workers to launch after previous workers
end their work.

Function names **must** be of the form :py:func:`after_worker_name`.
"""
from nemo_nowcast import NextWorker


def after_download_forcing(msg, config, checklist):
    """Calculate the list of workers to launch after the download_forcing worker ends."""
    next_workers = {
        "crash": [],
        "failure": [],
        "success": [],
    }
    if msg.type == "success":
        run_date = list(msg.payload.keys())[0]
        next_workers[msg.type] = [
            NextWorker("nowcast.workers.make_plots", args=["forcing", "--run-date", run_date]),
            NextWorker("nowcast.workers.make_feeds", args=["--run-date", run_date]),
        ]
        race_condition_workers = {"make_plots", "make_feeds"}
        return next_workers[msg.type], race_condition_workers
    return next_workers[msg.type]


def after_make_plots(msg, config, checklist):
    """Calculate the list of workers to launch after the make_plots worker ends."""
    next_workers = {
        "crash": [],
        "success": [NextWorker("nemo_nowcast.workers.clear_checklist")],
    }
    return next_workers[msg.type]


def after_make_feeds(msg, config, checklist):
    """Calculate the list of workers to launch after the make_feeds worker ends.

    make_plots races make_feeds; the system's day ends after both, by after_make_plots.
    """
    next_workers = {
        "crash": [],
        "failure": [],
        "success": [],
    }
    return next_workers[msg.type]


def after_clear_checklist(msg, config, checklist):
    """Calculate the list of workers to launch after the clear_checklist worker ends."""
    next_workers = {
        "crash": [],
        "failure": [],
        "success": [NextWorker("nemo_nowcast.workers.rotate_logs")],
    }
    return next_workers[msg.type]


def after_rotate_logs(msg, config, checklist):
    """Calculate the list of workers to launch after the rotate_logs worker ends."""
    return []
