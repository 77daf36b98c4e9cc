"""Reliance shift: has what the champion relies on moved between training and served data?

Input drift (PSI) says the inputs moved; it does not say whether the model now leans on other
features to answer them. Training logs the champion's global explanation (`pipeline.explanation`:
mean |TreeSHAP contribution| per contract feature on its evaluation rows, summed over classes).
The monitor computes the same figure, with the same function, on a seeded sample of the inputs
the champion itself answered in the window (`prediction_log` keeps every served record's
features), and reports per feature the training value, the served value and the shift.

The shift is the difference of shares: a feature's share of the total mean |contribution|,
served minus training (so +0.10 means ten more points of the explanation rest on that feature).
Shares, because the magnitude of every contribution grows and shrinks with how sure the model is
of the rows at hand (confident regions have large raw scores): served data the model is simply
surer about would otherwise look like a shift of every feature, and the raw values are still in
the report for that question. A difference and not a ratio, because a ratio explodes on
features the model barely uses (0.002 -> 0.006 is "3x" and means nothing) while a difference
weighs each feature by how much of the answer it carries; it is bounded in [-1, 1] and the
features' shifts sum to zero. The summary, `total_shift`, is half the sum of |shift|: the total
variation distance between the two shares (0 = the same reliance, 1 = disjoint), the fraction of
the explanation that moved from some features to others.

It does not feed the monitor's alert (which retrains): a reliance shift follows from input drift
the PSI already reports, and on its own is a question for a person, so it is a gauge with a
Prometheus warning (deploy/prometheus/alerts.yml) and a section of the Monitoring page.

Cost: TreeSHAP over all classes costs hundreds of predictions (measured on a 1,169-tree,
255-leaf champion: 86 ms of CPU per record, so ~45 s for the default 500 on one thread), so at
most `MONITOR_RELIANCE_ROWS` served records are explained (0 turns the comparison off), on one
thread (the monitor often shares the host with the inference service). Noise, measured: 500
records of traffic like training's give a total shift of 0.007-0.010 (tiny and large champions). Fewer than `MONITOR_MIN_ROWS`
records of the champion in the window are not judged, as for drift. Models without exact
contributions, and champions whose run has no logged explanation, are skipped with a note
saying why.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from forestops import contract
from forestops.config import Settings
from forestops.modeling.explain import NotExplainable, explainer_for
from forestops.modeling.features import frame_to_arrays
from forestops.modeling.package import ForestCoverModel
from forestops.modeling.tracking import ServingModelRef
from forestops.pipeline.explanation import importance_table, logged_importance

log = logging.getLogger(__name__)


def compare(training: Mapping[str, float], served: Mapping[str, float]) -> dict[str, Any]:
    """Per contract feature {training, served, shift}, and the total variation of the shares."""
    training_total = sum(training[name] for name in contract.FEATURE_NAMES)
    served_total = sum(served[name] for name in contract.FEATURE_NAMES)
    features = {
        name: {
            "training": float(training[name]),
            "served": float(served[name]),
            "shift": float(served[name] / served_total - training[name] / training_total),
        }
        for name in contract.FEATURE_NAMES
    }
    total = 0.5 * sum(abs(values["shift"]) for values in features.values())
    return {"features": features, "total_shift": float(total)}


def reliance_shift(
    settings: Settings, champion: ServingModelRef, model: Any, served: pd.DataFrame
) -> dict[str, Any]:
    """The report's `reliance` entry: {rows, features, total_shift, note}.

    `model` is the champion as the monitor loaded it (pyfunc), `served` the inputs the champion
    answered in the window. When nothing is compared, `note` says why and `features` is empty.
    """
    limit = settings.monitor_reliance_rows
    if limit == 0:
        return _skipped("off (MONITOR_RELIANCE_ROWS=0)")
    if len(served) < settings.monitor_min_rows:
        return _skipped(
            f"{len(served)} records served by the champion in the window, fewer than "
            f"MONITOR_MIN_ROWS ({settings.monitor_min_rows})"
        )
    python_model = model.unwrap_python_model()
    if not isinstance(python_model, ForestCoverModel):
        return _skipped(f"the champion is a {type(python_model).__name__}, not a forestops model")
    explainer, why_not = explainer_for(python_model, settings.inference_compiler)
    if explainer is None:
        return _unexplainable(why_not)
    from mlflow.tracking import MlflowClient

    logged = logged_importance(MlflowClient(settings.mlflow_tracking_uri), champion.run_id)
    if logged is None:
        return _skipped(
            "the champion's training run logged no global explanation (trained before "
            "explanations were logged)"
        )
    rows = explainer.affordable(min(limit, len(served)))
    sample = served.sample(rows, random_state=settings.train_seed)
    try:
        explanation = explainer.explain(*frame_to_arrays(sample), threads=1)
    except NotExplainable as error:  # a forest whose kernel failed
        return _unexplainable(str(error))
    now = importance_table(explanation).set_index("feature")["mean_abs_contribution"]
    then = logged.set_index("feature")["mean_abs_contribution"]
    result = {"rows": len(sample), **compare(then.to_dict(), now.to_dict()), "note": None}
    log.info("reliance shift on %d served records: %.3f", len(sample), result["total_shift"])
    return result


def _unexplainable(why: str | None) -> dict[str, Any]:
    return _skipped(f"the champion cannot be explained: {why}")


def _skipped(note: str) -> dict[str, Any]:
    return {"rows": 0, "features": {}, "total_shift": None, "note": note}
