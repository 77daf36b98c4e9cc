"""One log format for every part of forestops (CLI, scheduler jobs, services)."""

from __future__ import annotations

import logging
import os

from forestops.redact import install_log_redaction

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(level: int = logging.INFO) -> None:
    # MLflow installs its own handler and format on import unless told not to; its messages then
    # go through the root logger below. An environment variable because MLflow reads it at import
    # time (often later than this call), and so that child processes inherit it.
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    logging.basicConfig(level=level, format=FORMAT, force=True)
    logging.captureWarnings(True)  # library warnings in the same format, not raw on stderr
    install_log_redaction()  # no password or token of a URI in any log line
    # Third-party chatter that drowns the one-line job statuses.
    for noisy in ("httpx", "alembic", "urllib3", "botocore", "git", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
