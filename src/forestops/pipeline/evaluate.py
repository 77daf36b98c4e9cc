"""Scoring a model on the evaluation split: the numbers and pictures every candidate run records.

Models are scored through `ForestCoverModel.predict`, the same call `mlflow.pyfunc` makes in
serving, so a candidate's accuracy and the re-scored champion's accuracy come from one code path
on the same rows. Figures use matplotlib's object API (no pyplot): it needs no display, and
training may run on a scheduler thread, where pyplot's global state is not safe.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    log_loss,
    recall_score,
)

from forestops import contract
from forestops.modeling.package import PROBABILITY_COLUMNS

CLASS_IDS = list(contract.CLASS_IDS)


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    confusion: np.ndarray  # rows: true class, columns: predicted class, all 7 classes
    report: dict[str, Any]  # sklearn's classification_report, keyed by class name

    @property
    def accuracy(self) -> float:
        return self.metrics["accuracy"]


def predict_probabilities(
    predict: Callable[[pd.DataFrame], pd.DataFrame], features: pd.DataFrame
) -> tuple[np.ndarray, float]:
    """Class probabilities (n, 7) from a pyfunc-style `predict`, and the seconds it took."""
    started = time.perf_counter()
    output = predict(features)
    seconds = time.perf_counter() - started
    return output.loc[:, list(PROBABILITY_COLUMNS)].to_numpy(dtype=np.float64), seconds


def evaluate(labels: np.ndarray, probabilities: np.ndarray) -> Evaluation:
    predicted = probabilities.argmax(axis=1)
    metrics = {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(
            f1_score(labels, predicted, labels=_present(labels), average="macro", zero_division=0)
        ),
        "log_loss": float(log_loss(labels, probabilities, labels=CLASS_IDS)),
    }
    recalls = recall_score(labels, predicted, labels=CLASS_IDS, average=None, zero_division=0)
    support = np.bincount(labels, minlength=len(CLASS_IDS))
    for cls, recall in zip(contract.COVER_TYPES, recalls, strict=True):
        if support[cls.id]:  # a class absent from the evaluation rows has no recall to report
            metrics[f"recall_{_slug(cls.name)}"] = float(recall)
    report = classification_report(
        labels,
        predicted,
        labels=CLASS_IDS,
        target_names=list(contract.CLASS_NAMES),
        output_dict=True,
        zero_division=0,
    )
    return Evaluation(metrics, confusion_matrix(labels, predicted, labels=CLASS_IDS), report)


def accuracy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    return float(accuracy_score(labels, probabilities.argmax(axis=1)))


def _present(labels: np.ndarray) -> list[int]:
    return sorted(int(c) for c in np.unique(labels))


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def report_text(evaluation: Evaluation) -> str:
    """The classification report as the familiar fixed-width table."""
    rows = [f"{'class':<20}{'precision':>10}{'recall':>10}{'f1-score':>10}{'support':>10}"]
    for name in (*contract.CLASS_NAMES, "macro avg", "weighted avg"):
        values = evaluation.report[name]
        rows.append(
            f"{name:<20}{values['precision']:>10.4f}{values['recall']:>10.4f}"
            f"{values['f1-score']:>10.4f}{int(values['support']):>10d}"
        )
    rows.append(f"{'accuracy':<20}{evaluation.accuracy:>40.4f}")
    return "\n".join(rows) + "\n"


def confusion_figure(evaluation: Evaluation, title: str) -> Figure:
    """Row-normalised confusion matrix (colour = share of the true class), counts written in."""
    matrix = evaluation.confusion
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    figure = Figure(figsize=(8, 7), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="share of the true class")
    ticks = range(len(CLASS_IDS))
    axes.set_xticks(ticks, contract.CLASS_NAMES, rotation=45, ha="right")
    axes.set_yticks(ticks, contract.CLASS_NAMES)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for row in ticks:
        for column in ticks:
            axes.text(
                column,
                row,
                f"{matrix[row, column]:,}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if shares[row, column] > 0.5 else "black",
            )
    return figure
