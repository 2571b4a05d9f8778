"""Make plots worker: draw a day's figures of the given type."""
import logging
import os
from pathlib import Path

import arrow
from nemo_nowcast import NowcastWorker

from nowcast import lib

NAME = "make_plots"
logger = logging.getLogger(NAME)


def main():
    worker = NowcastWorker(NAME, description=__doc__)
    worker.init_cli()
    worker.cli.add_argument("plot_type", choices={"forcing", "summary"}, help="Which figures.")
    worker.cli.add_date_option(
        "--run-date", default=arrow.now().floor("day"), help="Date of the figures."
    )
    worker.run(make_plots, success, failure)
    return worker


def success(parsed_args):
    logger.info(f"{parsed_args.plot_type} plots for {parsed_args.run_date.format('YYYY-MM-DD')} made")
    return "success"


def failure(parsed_args):
    logger.critical(f"{parsed_args.plot_type} plots failed")
    return "failure"


def make_plots(parsed_args, config, *args):
    figures = Path(config["figures"]["storage path"])
    lib.mkdir(figures, logger)
    figure = figures / f"{parsed_args.plot_type}_{parsed_args.run_date.format('YYYYMMDD')}.svg"
    figure.write_text("<svg xmlns='http://www.w3.org/2000/svg'/>\n")
    os.chmod(figure, int(lib.FILEPERMS))
    logger.debug(f"wrote {figure}")
    return {parsed_args.plot_type: os.fspath(figure)}


if __name__ == "__main__":
    main()  # pragma: no cover
