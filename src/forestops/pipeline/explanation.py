"""The global explanation of a trained candidate: what the model relies on, per contract feature.

Mean |contribution| (TreeSHAP, `modeling.explain`) of each contract feature on the evaluation
rows, summed over the classes (and per class), logged to the candidate's run as a table and a
bar chart, with dependence plots (contribution to the predicted class against the feature's
value) for the top features. TreeSHAP costs ~100x a prediction on a large forest, so at most
`MAX_ROWS` evaluation rows (a seeded sample; fewer for a large forest, whose records cost in
proportion to its nodes: `Explainer.affordable`) are explained. A model without exact
contributions gets the tag `forestops.explanation` saying why instead.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient

from forestops import contract
from forestops.modeling.explain import Explanation, NotExplainable, explainer_for
from forestops.modeling.features import frame_to_arrays
from forestops.modeling.package import ForestCoverModel
from forestops.modeling.tracking import TAG_EXPLANATION

log = logging.getLogger(__name__)

MAX_ROWS = 500
TABLE = "explanation/global_importance.json"
CHART = "explanation/global_importance.png"
DEPENDENCE = "explanation/dependence.png"
TOP_FEATURES = 3


def importance_table(explanation: Explanation) -> pd.DataFrame:
    """Per contract feature, mean |contribution| summed over classes, then per class; largest first."""
    per_class = np.abs(explanation.contributions).mean(axis=0)  # (K, 12)
    table = pd.DataFrame(
        {
            "feature": list(contract.FEATURE_NAMES),
            "mean_abs_contribution": per_class.sum(axis=0),
            **{
                f"class_{class_id}": per_class[k]
                for k, class_id in enumerate(explanation.classes.tolist())
            },
        }
    )
    return table.sort_values("mean_abs_contribution", ascending=False, ignore_index=True)


def logged_importance(client: MlflowClient, run_id: str) -> pd.DataFrame | None:
    """The importance table `log_global_explanation` logged to `run_id`, or None if it has none
    (a model without exact contributions, or trained before explanations were logged)."""
    if TABLE not in {info.path for info in client.list_artifacts(run_id, "explanation")}:
        return None
    with tempfile.TemporaryDirectory() as folder:
        body = json.loads(Path(client.download_artifacts(run_id, TABLE, folder)).read_text())
    return pd.DataFrame(body["data"], columns=body["columns"])


def _importance_figure(table: pd.DataFrame, rows: int) -> Figure:
    figure = Figure(figsize=(8, 5), layout="constrained")
    axes = figure.add_subplot()
    ordered = table.iloc[::-1]
    axes.barh(ordered["feature"], ordered["mean_abs_contribution"], color="#2e7d32")
    axes.set_xlabel("mean |contribution| to the raw scores, summed over classes")
    axes.set_title(f"What the model relies on ({rows:,} evaluation rows, TreeSHAP)")
    return figure


def _dependence_figure(
    sample: pd.DataFrame, explanation: Explanation, features: list[str]
) -> Figure:
    predicted = explanation.raw_scores.argmax(axis=1)
    rows = np.arange(len(sample))
    figure = Figure(figsize=(4 * len(features), 3.6), layout="constrained")
    for index, name in enumerate(features):
        axes = figure.add_subplot(1, len(features), index + 1)
        column = contract.FEATURE_NAMES.index(name)
        axes.scatter(
            sample[name].astype(str) if name in contract.CATEGORICAL_NAMES else sample[name],
            explanation.contributions[rows, predicted, column],
            s=6,
            alpha=0.5,
            c=explanation.classes[predicted],
            cmap="tab10",
            vmin=0,
            vmax=9,
        )
        axes.axhline(0, color="grey", linewidth=0.8)
        axes.set_xlabel(name)
        axes.set_ylabel("contribution to the predicted class")
        if name in contract.CATEGORICAL_NAMES:
            axes.tick_params(axis="x", labelrotation=90, labelsize=6)
    return figure


def log_global_explanation(
    model: ForestCoverModel, features: pd.DataFrame, seed: int, compiler: str
) -> None:
    """Log the candidate's global explanation to the active run (or why there is none)."""
    explainer, why_not = explainer_for(model, compiler)
    if explainer is None:
        mlflow.set_tag(TAG_EXPLANATION, f"none: {why_not}")
        return
    rows = explainer.affordable(min(MAX_ROWS, len(features)))
    sample = features.sample(rows, random_state=seed)
    try:
        explanation = explainer.explain(*frame_to_arrays(sample), threads=0)  # 0: all cores
    except NotExplainable as error:  # a forest whose kernel failed: nothing else explains it
        mlflow.set_tag(TAG_EXPLANATION, f"none: {error}")
        return
    table = importance_table(explanation)
    mlflow.log_table(table, TABLE)
    mlflow.log_figure(_importance_figure(table, len(sample)), CHART)
    top = table["feature"].head(TOP_FEATURES).tolist()
    mlflow.log_figure(_dependence_figure(sample, explanation, top), DEPENDENCE)
    mlflow.set_tag(
        TAG_EXPLANATION, f"TreeSHAP on {len(sample)} evaluation rows; top: {', '.join(top)}"
    )
    log.info("global explanation: top features %s", ", ".join(top))
