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

from forestops.config import Settings, get_settings
from forestops.logs import configure_logging
from forestops.source.client import SourceError

log = logging.getLogger("forestops.jobs")


def ingest(settings: Settings) -> dict[str, Any]:
    from forestops.pipeline.harvest import harvest_batch
    from forestops.pipeline.ingest import ingest_batch

    result = harvest_batch(settings) if settings.ingest_harvest else ingest_batch(settings)
    return {"status": result.status, "summary": result.summary()}


def train(settings: Settings) -> dict[str, Any]:
    from forestops.pipeline.train import train as train_models

    result = train_models(settings)
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
    except Exception as error:
        if not isinstance(error, SourceError):
            log.exception("%s failed", name)
        outcome = {"status": "error", "error": f"{type(error).__name__}: {error}"}
    result_file.write_text(json.dumps(outcome))
    return 1 if outcome["status"] == "error" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
