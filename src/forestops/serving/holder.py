"""The model holder: which model the service answers with, and how it changes without a blip.

Requests read `holder.current` once and use that object to the end, so a swap is one reference
assignment: requests in flight finish on the old model, new ones get the new one, none fails.
A new champion is downloaded (`model_cache`), checked and loaded (`model_loader`: integrity, smoke
test, the compiled forest training shipped) entirely before the swap, while the old one keeps
answering; a refused candidate is remembered so polling does not download it again and again, and
`refusal` says why (/metadata, the log). The tracking server is only ever contacted from `refresh`
(start-up, the poll thread, /reload), never from the request path. A LightGBM model that arrived
without a shipped forest for this platform is compiled here in the background (`acceleration`)
and its faster runtime swapped in the same way. After a swap the heap is settled (`heap`), so
the garbage collector's full passes stay short.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Literal

from forestops.config import Settings
from forestops.modeling.integrity import signing_key
from forestops.modeling.tracking import ServingModelRef, resolve_serving_model
from forestops.serving import heap
from forestops.serving.acceleration import ForestAccelerator
from forestops.serving.model_cache import ModelCache
from forestops.serving.model_loader import open_model
from forestops.serving.served_model import ModelRefused, ServedModel, describe, short

log = logging.getLogger(__name__)

Status = Literal["ok", "degraded", "unavailable"]
Outcome = Literal["swapped", "unchanged", "refused", "missing", "failed"]
Trigger = Literal["startup", "poll", "api"]


@dataclass(frozen=True)
class RefreshResult:
    outcome: Outcome
    detail: str
    model_version: str | None

    @property
    def reloaded(self) -> bool:
        return self.outcome == "swapped"


class ModelHolder:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache = ModelCache(settings)
        self.current: ServedModel | None = None
        self.problem: str | None = "no model loaded yet"
        self.refusal: str | None = None  # why the registry's choice is not served (None: it is)
        self._key = signing_key(settings)  # no key, no service: nothing could be verified
        self.refreshes: Counter[tuple[Trigger, Outcome]] = Counter()
        self._refused: dict[tuple[str, str | None], str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._first_refresh = threading.Event()
        self._thread: threading.Thread | None = None
        self._accelerator = ForestAccelerator(settings, self._update)

    # --- state ----------------------------------------------------------------------------------
    @property
    def status(self) -> Status:
        if self.current is None:
            return "unavailable"
        return "degraded" if self.problem else "ok"

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self, wait_s: float | None = None) -> None:
        """Serve the cached model at once (if any), then confirm it with the tracking server.

        Waits up to `wait_s` (default `settings.model_startup_wait_s`) for that first check, so a
        normal start reports ok from the first request, and a start with the tracking server
        down still begins serving the cache (degraded) after the wait.
        """
        if self._thread is not None:
            return
        self._load_last_good()
        self._thread = threading.Thread(target=self._run, name="model-holder", daemon=True)
        self._thread.start()
        self._first_refresh.wait(self.settings.model_startup_wait_s if wait_s is None else wait_s)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._accelerator.cancel()
        if self._thread is not None:
            self._thread.join(timeout)
        current = self.current
        if current is not None and current.explainer is not None and current.explainer.warmup:
            current.explainer.warmup.join(timeout)  # a kernel still being built for `?explain=`

    def _run(self) -> None:
        self.refresh("startup")
        self._first_refresh.set()
        interval = self.settings.model_poll_interval_s
        while interval > 0 and not self._stop.wait(interval):
            self.refresh("poll")

    # --- refresh --------------------------------------------------------------------------------
    def refresh(self, trigger: Trigger = "api") -> RefreshResult:
        """Ask the tracking server for the model to serve and swap to it if it is new and sound."""
        with self._lock:
            result = self._refresh(trigger)
            self.refreshes[trigger, result.outcome] += 1
        level = logging.WARNING if result.outcome in {"refused", "failed"} else logging.INFO
        log.log(level, "model refresh (%s): %s: %s", trigger, result.outcome, result.detail)
        return result

    def _refresh(self, trigger: Trigger) -> RefreshResult:
        try:
            ref = resolve_serving_model(self.settings)
        except Exception as error:
            return self._fail(f"tracking server unreachable: {short(error)}")
        if ref is None:
            return self._fail(
                f"no model to serve: nothing aliased {self.settings.model_name}"
                f"@{self.settings.champion_alias} (or no finished candidate run) yet",
                "missing",
            )
        served = self.current
        if served is not None and (served.ref.run_id, served.ref.version) == _key(ref):
            self.current = replace(served, ref=ref)  # same files; fresher alias, tags, metrics
            self.problem = self.refusal = None
            return RefreshResult("unchanged", f"already serving {describe(ref)}", ref.version)
        if trigger == "poll" and _key(ref) in self._refused:
            self.refusal = self._refused[_key(ref)]
            return self._fail(self.refusal, "refused")
        try:
            path = self.cache.download(ref)
        except Exception as error:
            return self._fail(f"could not download {describe(ref)}: {short(error)}")
        try:
            candidate = open_model(self.settings, self._key, path, ref)
        except ModelRefused as error:
            shutil.rmtree(path, ignore_errors=True)
            self.refusal = self._refused[_key(ref)] = f"refused {describe(ref)}: {error}"
            return self._fail(self.refusal, "refused")
        self._swap(candidate)
        self._accelerator.start(candidate)
        return RefreshResult("swapped", f"now serving {describe(ref)}", ref.version)

    def _fail(self, reason: str, outcome: Outcome = "failed") -> RefreshResult:
        served = self.current
        if served is not None:
            self.problem = f"{reason}; still serving {describe(served.ref)}"
        else:
            self.problem = reason
        return RefreshResult(outcome, self.problem, served.ref.version if served else None)

    def _swap(self, candidate: ServedModel) -> None:
        self.current = candidate
        self.problem = self.refusal = None
        self.cache.remember(candidate.path)
        log.info("%s answers with the %s runtime", describe(candidate.ref), candidate.runtime)
        heap.settle()

    def _load_last_good(self) -> None:
        cached = self.cache.last_good()
        if cached is None:
            return  # no usable cache: the first refresh decides
        path, ref = cached
        try:
            self.current = open_model(self.settings, self._key, path, ref)
        except ModelRefused as error:
            log.warning("cached model %s unusable: %s", path, error)
            self.refusal = f"refused the cached {describe(ref)}: {error}"
            shutil.rmtree(path, ignore_errors=True)  # the first refresh downloads it afresh
            return
        self.problem = f"serving cached {describe(ref)}; tracking server not confirmed yet"
        self._accelerator.start(self.current)
        heap.settle()

    def _update(self, served: ServedModel, changes: dict[str, Any]) -> None:
        """Change the served model's runtime, unless another model was swapped in meanwhile."""
        with self._lock:
            current = self.current
            if current is None or current.model is not served.model:
                return
            self.current = replace(current, **changes)
        if changes.get("runtime_note"):
            log.warning(
                "%s keeps the LightGBM booster: %s", describe(served.ref), changes["runtime_note"]
            )
        else:
            log.info("%s now runs compiled (the booster's answers)", describe(served.ref))


def _key(ref: ServingModelRef) -> tuple[str, str | None]:
    return ref.run_id, ref.version
