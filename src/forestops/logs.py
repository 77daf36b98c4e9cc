"""One log format for every part of forestops (CLI, scheduler jobs, services)."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format=FORMAT, force=True)
    # Third-party chatter that drowns the one-line job statuses.
    for noisy in ("httpx", "alembic.runtime.migration", "urllib3", "botocore", "git"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
