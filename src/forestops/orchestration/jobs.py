"""One tick of a heavy job, run as `python -m forestops.orchestration.jobs NAME RESULT_FILE LEVEL`.

The embedded scheduler runs every ingestion and training tick in a fresh child process (see
`scheduler`): the same pipeline functions as `forestops ingest` / `forestops train`, plus a
machine-readable outcome in RESULT_FILE for the scheduler's one-line status. A failure becomes
the tick's reason; an unexpected exception is also logged here with its traceback, while an
unreachable or misbehaving data source (SourceError, retried already) needs no traceback: its
message names the URL and the cause, and a source that stays down would repeat it every tick.

SIGTERM (the supervisor's shutdown, after the grace period) is turned into KeyboardInterrupt so
the job unwinds like Ctrl-C: the ingestion transaction rolls back, the MLflow run is closed.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError

from forestops.config import Settings, describe_invalid, get_settings
from forestops.logs import configure_logging
from forestops.source.client import SourceError

log = logging.getLogger("forestops.jobs")


def ingest(settings: Settings) -> dict[str, Any]:
    from forestops.pipeline.harvest import harvest_batch
    from forestops.pipeline.ingest import ingest_batch

    result = harvest_batch(settings) if settings.ingest_harvest else ingest_batch(settings)
    return {"status": result.status, "summary": result.summary()}


def train(settings: Settings) -> dict[str, Any]:
    """A training tick trains only when rows arrived since the last training: the rule Airflow's
    `check_new_data` applies, in one place (`model_ops.train_on_request`)."""
    from forestops.pipeline.model_ops import train_on_request

    result, _ = train_on_request(settings, force=False, actor="scheduler")
    return {
        "status": result.status,
        "summary": result.summary(),
        "champion_changed": result.champion_changed,
    }


def monitor(settings: Settings) -> dict[str, Any]:
    from forestops.pipeline.monitor import monitor as run_monitor

    report = run_monitor(settings)
    return {"status": report.status, "summary": report.summary(), "alert": report.alert}


JOBS: dict[str, Callable[[Settings], dict[str, Any]]] = {
    "ingest": ingest,
    "train": train,
    "monitor": monitor,
}


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


def main(argv: list[str]) -> int:
    name, result_file, level = argv[0], Path(argv[1]), int(argv[2])
    configure_logging(level)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        outcome = JOBS[name](get_settings())
    except KeyboardInterrupt as stop:
        outcome = {"status": "error", "error": f"interrupted ({stop}) before it finished"}
    except ValidationError as invalid:  # a bad setting: one line naming it, no traceback
        outcome = {"status": "error", "error": f"bad setting {describe_invalid(invalid)}"}
    except SourceError as error:  # the client's message already says what and what to do
        outcome = {"status": "error", "error": str(error)}
    except Exception as error:
        log.exception("%s failed", name)
        outcome = {"status": "error", "error": f"{type(error).__name__}: {error}"}
    result_file.write_text(json.dumps(outcome))
    return 1 if outcome["status"] == "error" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
