"""Heavy job ticks (ingestion, training): APScheduler decides when, a fresh child process runs each.

Why a supervised child per tick rather than APScheduler's ProcessPoolExecutor:
- a crash (a segfault in a native library, the OOM killer) ends one tick, not the pool; a broken
  `concurrent.futures` pool fails every later submission until it is rebuilt;
- one tick can be stopped on its own, gracefully and then forcibly: a pool cannot cancel a task
  that is already running;
- the child has its own process group, so Ctrl-C reaches a running ingestion only when the
  supervisor decides, after it had the chance to commit its batch;
- memory goes back to the OS after every training (LightGBM on the full set peaks near 0.9 GB).
The cost is a few seconds of imports per tick, against intervals of minutes.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from forestops.config import Settings
from forestops.orchestration.supervisor import Child, describe_exit
from forestops.pipeline.notify import notify

log = logging.getLogger("forestops.scheduler")


@dataclass(frozen=True)
class TickResult:
    job: str
    ok: bool
    status: str  # the pipeline's own status ("trained", "skipped", ...) or "error" / "crashed"
    message: str  # the result's summary() or the reason of the failure
    seconds: float
    champion_changed: bool = False
    alert: bool = False  # a monitor tick that found drift or an accuracy drop


class JobRunner:
    """Runs ticks of the heavy jobs as children; remembers the running ones to stop them."""

    def __init__(self, env: Mapping[str, str], log_level: int) -> None:
        self._env = dict(env)
        self._log_level = log_level
        self._running: dict[str, Child] = {}
        self._lock = threading.Lock()
        self._stopping = False

    def is_running(self, job: str) -> bool:
        with self._lock:
            return job in self._running

    def run(self, job: str) -> TickResult | None:
        """One tick, blocking until the child exits; None once shutdown has begun. Never raises."""
        with tempfile.TemporaryDirectory(prefix=f"forestops-{job}-") as tmp:
            result_file = Path(tmp) / "result.json"
            argv = [sys.executable, "-m", "forestops.orchestration.jobs", job]
            argv += [str(result_file), str(self._log_level)]
            with self._lock:
                if self._stopping:
                    return None
                child = Child(f"{job}-job", argv, self._env).start()
                self._running[job] = child
            try:
                returncode = child.wait()
            finally:
                with self._lock:
                    del self._running[job]
            seconds = time.monotonic() - child.started_at
            outcome = json.loads(result_file.read_text()) if result_file.exists() else None
        if outcome is None:  # died before reporting: a signal, the OOM killer, an import error
            last = f"; last output: {child.tail[-1]}" if child.tail else ""
            return TickResult(job, False, "crashed", f"{describe_exit(returncode)}{last}", seconds)
        if returncode != 0:
            return TickResult(job, False, outcome["status"], outcome["error"], seconds)
        changed = bool(outcome.get("champion_changed"))
        alert = bool(outcome.get("alert"))
        return TickResult(job, True, outcome["status"], outcome["summary"], seconds, changed, alert)

    def stop(self, grace_s: float, hurry: threading.Event) -> None:
        """No new ticks; running ones get `grace_s` to finish (less if `hurry` is set), then SIGTERM."""
        with self._lock:
            self._stopping = True
            running = list(self._running.values())
        if running:
            names = ", ".join(child.name for child in running)
            log.info("letting %s finish (up to %.0f s; Ctrl-C again to stop now)", names, grace_s)
        deadline = time.monotonic() + grace_s
        for child in running:
            while child.poll() is None and time.monotonic() < deadline and not hurry.is_set():
                hurry.wait(0.2)
            if child.poll() is None:
                log.warning("%s still running: stopping it", child.name)
                child.stop()


class EmbeddedScheduler:
    """Ingestion every `ingest_interval_s` (first tick at start), training every `train_interval_s`.

    Until a champion exists, every ingestion tick (failed or not: rows may already be stored)
    is followed by a training tick right away, so the first model is served as soon as enough
    rows exist instead of one training interval later. After a training tick that changed the
    champion, `on_new_champion` tells the inference service (which also polls by itself).
    """

    def __init__(
        self,
        settings: Settings,
        runner: JobRunner,
        has_champion: Callable[[], bool],
        on_new_champion: Callable[[], None],
    ) -> None:
        self._settings = settings
        self._runner = runner
        self._has_champion = has_champion
        self._on_new_champion = on_new_champion
        self._lock = threading.Lock()  # orders tick follow-ups against `pause`
        self._stopping = False
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=4)},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
        )
        now = datetime.now(UTC)
        self._scheduler.add_job(
            self._ingest_tick,
            IntervalTrigger(seconds=settings.ingest_interval_s, start_date=now),
            id="ingest",
            next_run_time=now,
        )
        self._scheduler.add_job(
            self._train_tick,
            IntervalTrigger(seconds=settings.train_interval_s, start_date=now),
            id="train",
        )
        self._scheduler.add_job(
            self._monitor_tick,
            IntervalTrigger(seconds=settings.monitor_interval_s, start_date=now),
            id="monitor",
        )

    def every(self, seconds: float, func: Callable[[], None], job_id: str) -> None:
        self._scheduler.add_job(func, IntervalTrigger(seconds=seconds), id=job_id)

    def start(self) -> None:
        self._scheduler.start()

    def pause(self) -> None:
        """No new ticks from now on; ticks still running finish without touching the scheduler.

        `BackgroundScheduler.shutdown(wait=True)` holds the job-store lock while it waits for
        the running jobs: a tick that looked up or rescheduled a job after that would deadlock.
        """
        with self._lock:
            self._stopping = True
            self._scheduler.pause()

    def shutdown(self) -> None:
        self._scheduler.shutdown(wait=True)

    def _ingest_tick(self) -> None:
        result = self._runner.run("ingest")
        if result is None:
            return
        self._report(result)
        if self._stopping or self._runner.is_running("train"):
            return
        try:
            if self._has_champion():
                return
        except Exception as error:  # the tracking server may be down: the ticks go on
            log.warning("cannot look up the champion: %s", error)
            return
        self._train_now("no champion yet")

    def _train_tick(self) -> None:
        result = self._runner.run("train")
        if result is None:
            return
        self._report(result)
        if result.champion_changed and not self._stopping:
            self._on_new_champion()

    def _monitor_tick(self) -> None:
        """A drift or accuracy alert retrains now (the monitor job already notified)."""
        result = self._runner.run("monitor")
        if result is None:
            return
        self._report(result)
        if result.alert:
            self._train_now("monitor alert")

    def _train_now(self, reason: str) -> None:
        """Bring the next training tick forward to now, unless one runs or shutdown began."""
        with self._lock:
            if self._stopping or self._runner.is_running("train"):
                return
            log.info("%s: training now", reason)
            self._scheduler.modify_job("train", next_run_time=datetime.now(UTC))

    def _next_tick(self, job_id: str) -> str | None:
        """Local time of the job's next tick; None once shutdown began."""
        with self._lock:
            job = None if self._stopping else self._scheduler.get_job(job_id)
        return job.next_run_time.astimezone().strftime("%H:%M:%S") if job else None

    def _report(self, result: TickResult) -> None:
        """The one-line status of a tick; a failed tick is also a notification."""
        upcoming = self._next_tick(result.job)
        if result.ok:
            log.info(
                "%s %s (%.1f s): %s | %s",
                result.job,
                result.status,
                result.seconds,
                result.message,
                f"next {upcoming}" if upcoming else "stopping",
            )
        else:
            log.error(
                "%s FAILED (%.1f s): %s | %s",
                result.job,
                result.seconds,
                result.message,
                f"retry {upcoming}" if upcoming else "stopping",
            )
            notify(self._settings, f"{result.job} job failed: {result.message}")
