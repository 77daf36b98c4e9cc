"""Small seven-class LightGBM models for tests that compare something with LightGBM itself:
NaNs and zeros in the data, every decision type, values exactly on thresholds."""

from __future__ import annotations

import re

import lightgbm
import numpy as np

CLASSES = 7
FEATURES = 4
K_ZERO_THRESHOLD = (
    1.0000000180025095e-35  # LightGBM's kZeroThreshold (1e-35f): |value| <= it reads as 0
)


def trained(rows: int = 3000, seed: int = 0, **params: object) -> str:
    """A small seven-class model whose feature 0 has NaNs and feature 1 many zeros."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, FEATURES))
    X[rng.random(rows) < 0.2, 0] = np.nan
    X[rng.random(rows) < 0.3, 1] = 0.0
    y = (np.nan_to_num(X[:, 0]) * 2 + X[:, 1] + X[:, 2] > 0).astype(int) * 3 + (X[:, 3] > 0.5)
    y = (y + rng.integers(0, 3, rows)) % CLASSES
    train = lightgbm.Dataset(X, y)
    settings = {"objective": "multiclass", "num_class": CLASSES, "num_leaves": 15, "verbose": -1}
    booster = lightgbm.train({**settings, **params}, train, num_boost_round=8)
    return booster.model_to_string()


def with_decision_type(model_text: str, decision_type: int) -> str:
    """Every split of the model rewritten to one decision type (bit 1: default left; bits 2-3:
    missing type None, Zero, NaN): LightGBM reads such a file and predicts with it. The header's
    tree byte sizes go, as they no longer hold; LightGBM then reads the trees one after another."""

    def rewrite(match: re.Match[str]) -> str:
        count = len(match.group(1).split())
        return "decision_type=" + " ".join([str(decision_type)] * count)

    text = re.sub(r"^tree_sizes=.*\n", "", model_text, flags=re.MULTILINE)
    return re.sub(r"^decision_type=(.*)$", rewrite, text, flags=re.MULTILINE)


def probe_rows(model_text: str) -> np.ndarray:
    """Random rows plus rows holding every threshold exactly, NaN, zero, +-1e-36 and
    +-kZeroThreshold per feature."""
    rng = np.random.default_rng(1)
    thresholds = [
        float(v)
        for line in re.findall(r"^threshold=(.*)$", model_text, flags=re.MULTILINE)
        for v in line.split()
    ]
    specials = [np.nan, 0.0, -0.0, 1e-36, -1e-36, K_ZERO_THRESHOLD, -K_ZERO_THRESHOLD, *thresholds]
    rows = [rng.normal(size=(500, FEATURES))]
    for feature in range(FEATURES):
        block = rng.normal(size=(len(specials), FEATURES))
        block[:, feature] = specials
        rows.append(block)
    return np.vstack(rows)
