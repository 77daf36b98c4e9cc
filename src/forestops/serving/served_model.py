"""What the service answers with: one loaded, checked model and the function requests call.

A `ServedModel` never changes after it is built; a new runtime or a new model is a new object that
the holder swaps in with one reference assignment, so a request that read the old one finishes on
it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from forestops.modeling.explain import Explainer
from forestops.modeling.package import ForestCoverModel
from forestops.modeling.tracking import ServingModelRef
from forestops.serving.predictor import Predict, Runtime


@dataclass(frozen=True)
class ServedModel:
    model: ForestCoverModel
    predict: Predict  # what requests call: (numeric, area codes, soil codes) -> (n, 7)
    ref: ServingModelRef
    model_name: str
    path: Path
    runtime: Runtime
    runtime_note: str | None = None  # why a LightGBM model is not (yet) served compiled
    explainer: Explainer | None = (
        None  # `?explain=` answers (compiled TreeSHAP, whatever `runtime`)
    )
    unexplainable: str | None = None  # why there is no explainer


class ModelRefused(Exception):
    """The candidate cannot be served (fails its integrity check, does not load, is not a
    forestops model, fails the smoke test)."""


def describe(ref: ServingModelRef) -> str:
    return f"version {ref.version}" if ref.version else f"run {ref.run_id}"


def short(error: BaseException, limit: int = 300) -> str:
    """One line naming the error, short enough for /metadata and a log line."""
    text = f"{type(error).__name__}: {error}".replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def trained_at_iso(ref: ServingModelRef) -> str | None:
    if ref.trained_at_ms is None:
        return None
    return datetime.fromtimestamp(ref.trained_at_ms / 1000, UTC).isoformat()
