"""The model holder: which model the service answers with, and how it changes without a blip.

Requests read `holder.current` once and use that object to the end, so a swap is one reference
assignment: requests in flight finish on the old model, new ones get the new one, none fails.
Every model is downloaded into a local cache (`<FORESTOPS_HOME>/models/cache/<run_id>/`) before it
is loaded, and the last good one is remembered, so a restart with the tracking server down serves
from disk (status degraded). A candidate must load as a forestops pyfunc and pass a smoke
prediction (finite probabilities that sum to one, fast path equal to the pyfunc path) before it
is swapped in; a refused candidate is remembered so polling does not download it again and again.
Nothing is unpickled before its files pass `modeling.integrity`'s check (the training job's HMAC
over every file, recomputed from the local copy, the disk cache included): a version that fails
is refused without being deserialised, and `refusal` says why (/metadata, the log).
The tracking server is only ever contacted from `refresh` (start-up, the poll thread, /reload),
never from the request path. Once a LightGBM model serves, a background thread compiles it to
native code in a child process and, once the library gives the booster's answers, swaps the faster
runtime in the same way (`compiled_forest`); until then, or if it never does, the booster answers.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from forestops import contract
from forestops.config import Settings
from forestops.files import write_atomically
from forestops.modeling.explain import Explainer, explainer_for
from forestops.modeling.features import frame_to_arrays
from forestops.modeling.integrity import (
    ModelIntegrityError,
    download,
    model_files_uri,
    signing_key,
    verify_files,
)
from forestops.modeling.package import PROBABILITY_COLUMNS, ForestCoverModel, input_example
from forestops.modeling.tracking import (
    MODEL_ARTIFACT,
    TAG_SIGNATURE,
    ServingModelRef,
    resolve_serving_model,
)
from forestops.serving.compiled_forest import (
    TOLERANCE,
    CompileCancelled,
    ForestCompiler,
    library_name,
    load_forest,
    max_difference,
)
from forestops.serving.predictor import Predict, Runtime, lightgbm_booster, make_predictor

log = logging.getLogger(__name__)

Status = Literal["ok", "degraded", "unavailable"]
Outcome = Literal["swapped", "unchanged", "refused", "missing", "failed"]
Trigger = Literal["startup", "poll", "api"]
_KEEP_CACHED = 2  # the model served and the one before it (a rollback needs no download)
# Compiled forest vs booster, off the request path: ~5 s of CPU for a 1,200-tree model, so it runs
# once per compiled file (its verdict is kept beside it); later loads of that file check 200 records.
_VERIFICATION_ROWS = 20_000
_SANITY_ROWS = 200


@dataclass(frozen=True)
class ServedModel:
    model: ForestCoverModel
    predict: Predict  # what requests call: (numeric, area codes, soil codes) -> (n, 7)
    ref: ServingModelRef
    model_name: str
    path: Path
    runtime: Runtime
    runtime_note: str | None = None  # why a LightGBM model is not (yet) served compiled
    explainer: Explainer | None = None  # `?explain=` answers (always the booster's TreeSHAP)
    unexplainable: str | None = None  # why there is no explainer


@dataclass(frozen=True)
class RefreshResult:
    outcome: Outcome
    detail: str
    model_version: str | None

    @property
    def reloaded(self) -> bool:
        return self.outcome == "swapped"


class ModelRefused(Exception):
    """The candidate cannot be served (fails its integrity check, does not load, is not a
    forestops model, fails the smoke test)."""


class ModelHolder:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache_dir = settings.models_dir / "cache"
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
        self._compiler = ForestCompiler(
            settings.inference_compile_timeout_s, settings.inference_compiler
        )

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
        self._compiler.cancel()
        if self._thread is not None:
            self._thread.join(timeout)

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
            return self._fail(f"tracking server unreachable: {_short(error)}")
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
            return RefreshResult("unchanged", f"already serving {_describe(ref)}", ref.version)
        if trigger == "poll" and _key(ref) in self._refused:
            self.refusal = self._refused[_key(ref)]
            return self._fail(self.refusal, "refused")
        try:
            path = self._download(ref)
        except Exception as error:
            return self._fail(f"could not download {_describe(ref)}: {_short(error)}")
        try:
            candidate = self._open(path, ref)
        except ModelRefused as error:
            shutil.rmtree(path, ignore_errors=True)
            self.refusal = self._refused[_key(ref)] = f"refused {_describe(ref)}: {error}"
            return self._fail(self.refusal, "refused")
        self._swap(candidate)
        self._accelerate_later(candidate)
        return RefreshResult("swapped", f"now serving {_describe(ref)}", ref.version)

    def _fail(self, reason: str, outcome: Outcome = "failed") -> RefreshResult:
        served = self.current
        if served is not None:
            self.problem = f"{reason}; still serving {_describe(served.ref)}"
        else:
            self.problem = reason
        return RefreshResult(outcome, self.problem, served.ref.version if served else None)

    def _swap(self, candidate: ServedModel) -> None:
        self.current = candidate
        self.problem = self.refusal = None
        _write_json(self.cache_dir / "current.json", {"run_id": candidate.ref.run_id})
        self._prune(keep={candidate.path.name})

    # --- the local cache ------------------------------------------------------------------------
    def _download(self, ref: ServingModelRef) -> Path:
        """The model's files in the cache (downloaded once per run; a half download never counts)."""
        from mlflow.tracking import MlflowClient

        target = self.cache_dir / ref.run_id
        if (target / "metadata.json").is_file():
            _write_json(target / "metadata.json", self._metadata(ref))  # version/alias may move
            return target
        staging = self.cache_dir / f".staging-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            client = MlflowClient(self.settings.mlflow_tracking_uri)
            files = model_files_uri(self.settings, client, ref)
            download(self.settings, files, staging).rename(staging / MODEL_ARTIFACT)
            _write_json(staging / "metadata.json", self._metadata(ref))
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def _metadata(self, ref: ServingModelRef) -> dict[str, object]:
        return {"model_name": self.settings.model_name, "ref": ref.describe()}

    def _load_last_good(self) -> None:
        try:
            run_id = json.loads((self.cache_dir / "current.json").read_text())["run_id"]
            path = self.cache_dir / run_id
            metadata = json.loads((path / "metadata.json").read_text())
        except (OSError, ValueError, KeyError):
            return  # no usable cache: the first refresh decides
        if metadata.get("model_name") != self.settings.model_name:
            return
        names = {f.name for f in fields(ServingModelRef)}
        ref = ServingModelRef(**{k: v for k, v in metadata["ref"].items() if k in names})
        try:
            self.current = self._open(path, ref)
        except ModelRefused as error:
            log.warning("cached model %s unusable: %s", path, error)
            self.refusal = f"refused the cached {_describe(ref)}: {error}"
            shutil.rmtree(path, ignore_errors=True)  # the first refresh downloads it afresh
            return
        self.problem = f"serving cached {_describe(ref)}; tracking server not confirmed yet"
        self._accelerate_later(self.current)

    def _prune(self, keep: set[str]) -> None:
        cached = [p for p in self.cache_dir.iterdir() if p.is_dir() and p.name not in keep]
        cached.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in cached[_KEEP_CACHED - len(keep) :]:
            shutil.rmtree(stale, ignore_errors=True)

    def _open(self, path: Path, ref: ServingModelRef) -> ServedModel:
        import mlflow

        try:
            verify_files(self._key, path / MODEL_ARTIFACT, ref.tags.get(TAG_SIGNATURE))
        except ModelIntegrityError as error:
            raise ModelRefused(
                f"failed its integrity check, so it was not loaded: {error}"
            ) from error
        try:
            pyfunc = mlflow.pyfunc.load_model(str(path / MODEL_ARTIFACT))
            model = pyfunc.unwrap_python_model()
        except Exception as error:
            raise ModelRefused(f"does not load: {_short(error)}") from error
        if not isinstance(model, ForestCoverModel):
            raise ModelRefused(f"is a {type(model).__name__}, not a ForestCoverModel")
        single_threaded(model)
        predict, runtime = make_predictor(model)
        smoke_test(model, predict)
        explainer, unexplainable = explainer_for(model)
        return ServedModel(
            model=model,
            predict=predict,
            ref=ref,
            model_name=self.settings.model_name,
            path=path,
            runtime=runtime,
            explainer=explainer,
            unexplainable=unexplainable,
        )

    # --- the compiled runtime -------------------------------------------------------------------
    def _accelerate_later(self, served: ServedModel) -> None:
        if self.settings.inference_runtime == "auto" and served.runtime == "lightgbm":
            threading.Thread(
                target=self._accelerate, args=(served,), name="forest-compiler", daemon=True
            ).start()

    def _accelerate(self, served: ServedModel) -> None:
        """Serve `served` through its compiled form if that gives the booster's answers; else say
        why not."""
        booster = lightgbm_booster(served.model)
        assert booster is not None  # runtime "lightgbm" says so
        model_text = booster.model_to_string()
        path = served.path / library_name(model_text)
        verified = path.with_suffix(".json")  # the verdict on this very file, once it exists
        rows = _SANITY_ROWS if verified.is_file() and path.is_file() else _VERIFICATION_ROWS
        try:
            if not path.is_file():
                verified.unlink(missing_ok=True)
                self._compiler.compile(model_text, path)
            try:
                predict = load_forest(path, served.model.encoder.encode_arrays)
            except Exception:
                path.unlink(missing_ok=True)  # unreadable: the next load compiles again
                raise
            difference = max_difference(served.predict, predict, rows)
        except CompileCancelled:
            return
        except Exception as error:
            self._update(served, runtime_note=f"compiled forest failed: {_short(error)}")
            return
        if difference > TOLERANCE:
            note = (
                f"the compiled forest's probabilities differ from the booster's by up to "
                f"{difference:.3g} on {rows} verification records (tolerance {TOLERANCE:g})"
            )
            self._update(served, runtime_note=note)
            return
        if rows == _VERIFICATION_ROWS:
            _write_json(verified, {"max_difference": difference, "rows": rows})
        self._update(served, predict=predict, runtime="compiled")

    def _update(self, served: ServedModel, **changes: Any) -> None:
        """Change the served model's runtime, unless another model was swapped in meanwhile."""
        with self._lock:
            current = self.current
            if current is None or current.model is not served.model:
                return
            self.current = replace(current, **changes)
        if "runtime_note" in changes:
            log.warning(
                "%s keeps the LightGBM booster: %s", _describe(served.ref), changes["runtime_note"]
            )
        else:
            log.info("%s now runs compiled (the booster's answers)", _describe(served.ref))


def single_threaded(model: ForestCoverModel) -> None:
    """Make every model call use one thread; the service parallelises across calls instead.

    A LightGBM model trained with n_jobs=2 predicts one row with two OpenMP threads: on two busy
    cores the barrier waits for a descheduled thread (measured here: 12 ms instead of 0.2 ms
    for one row; FIELD_NOTES saw the same p99 blow-ups). Results do not depend on thread count.
    """
    estimator = model.estimator
    keys = [k for k in estimator.get_params() if k == "n_jobs" or k.endswith("__n_jobs")]
    if keys:
        estimator.set_params(**dict.fromkeys(keys, 1))


def smoke_frame() -> pd.DataFrame:
    """The contract's input example plus the all-minimum and all-maximum corners of the contract."""
    example = input_example()
    corners = [
        {
            **{f.name: getattr(f, bound) for f in contract.NUMERIC_FEATURES},
            **{name: cats[index].code for name, cats in contract.CATEGORICAL_FEATURES.items()},
        }
        for bound, index in (("minimum", 0), ("maximum", -1))
    ]
    return pd.concat([example, pd.DataFrame(corners)], ignore_index=True)


def smoke_test(model: ForestCoverModel, predict: Predict) -> None:
    """Raise ModelRefused unless `predict` answers sanely and agrees with the pyfunc path."""
    frame = smoke_frame()
    try:
        fast = predict(*frame_to_arrays(frame))
        slow = model.predict(None, frame)[list(PROBABILITY_COLUMNS)].to_numpy()
    except Exception as error:
        raise ModelRefused(f"smoke prediction raised {_short(error)}") from error
    expected = (len(frame), len(contract.CLASS_IDS))
    if fast.shape != expected:
        raise ModelRefused(f"smoke prediction has shape {fast.shape}, expected {expected}")
    if not np.isfinite(fast).all():
        raise ModelRefused("smoke prediction gave non-finite probabilities")
    if not np.allclose(fast.sum(axis=1), 1.0, atol=1e-6):
        raise ModelRefused("smoke prediction probabilities do not sum to 1")
    if not np.allclose(fast, slow, atol=1e-9):
        raise ModelRefused("the serving fast path disagrees with the pyfunc predict path")


def _key(ref: ServingModelRef) -> tuple[str, str | None]:
    return ref.run_id, ref.version


def _describe(ref: ServingModelRef) -> str:
    return f"version {ref.version}" if ref.version else f"run {ref.run_id}"


def _short(error: BaseException, limit: int = 300) -> str:
    text = f"{type(error).__name__}: {error}".replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _write_json(path: Path, payload: dict[str, object]) -> None:
    """Replace `path` atomically (a crash mid-write leaves the previous file intact)."""
    write_atomically(path, json.dumps(payload, indent=2, sort_keys=True))


def trained_at_iso(ref: ServingModelRef) -> str | None:
    if ref.trained_at_ms is None:
        return None
    return datetime.fromtimestamp(ref.trained_at_ms / 1000, UTC).isoformat()
