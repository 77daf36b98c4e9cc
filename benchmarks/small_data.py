"""Accuracy by training size, as a course group gets its data, on a held-out split of our own.

The shared data set (297,655 rows, shuffled) cut as the course's server cuts it: B = N // 10
rows per slice, group g served `rows[g*B:(g+1)*B]`. Slice 0 is served to no group: it is the
held-out split here, never read while choosing anything. Training pools: one batch (group 1's
slice, what a group gets from the course), three (slices 1-3), all (slices 1-9 and the last rows).

Each pool goes through what `forestops train` does: the stratified TRAIN_EVAL_FRACTION split, the
candidates fitted on the rest, the champion chosen on that evaluation split; then every fitted
candidate is scored on the held-out slice. Logistic regression and SVC are left out by default
(0.72 / 0.78 on all rows, FIELD_NOTES: never the champion).

    .venv/bin/python benchmarks/small_data.py [--sizes one,three,all] [--candidates lightgbm,random_forest]

Prints one JSON line per pool.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from forestops import contract
from forestops.config import Settings
from forestops.modeling.candidates import build_candidates, stratified_split
from forestops.source.dataset import read_dataset

ROOT = Path(__file__).resolve().parents[1]
DATASET = Path(os.environ.get("FORESTOPS_DATASET", ROOT.parent / "shared/data/covertype.csv.gz"))
SLICES = {"one": [1], "three": [1, 2, 3], "all": list(range(1, 11))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="one,three,all")
    parser.add_argument("--candidates", default="lightgbm,random_forest")
    args = parser.parse_args()
    frame = read_dataset(DATASET)
    batch = len(frame) // 10
    held_out = frame.iloc[:batch]
    held_x = held_out.drop(columns=[contract.LABEL])
    held_y = held_out[contract.LABEL].to_numpy()
    # One thread and no time budget: on a shared, busy machine LightGBM's OpenMP threads spin
    # (61 rounds in 300 s on 27k rows), and the budget would then decide the rounds, not the data.
    settings = Settings(
        train_candidates=args.candidates, train_n_jobs=1, lightgbm_time_budget_s=86_400
    )
    for size in args.sizes.split(","):
        rows = np.concatenate(
            [np.arange(g * batch, min((g + 1) * batch, len(frame))) for g in SLICES[size]]
        )
        pool = frame.iloc[rows]
        labels = pool[contract.LABEL].to_numpy()
        features = pool.drop(columns=[contract.LABEL])
        fit_rows, eval_rows = stratified_split(
            labels, round(len(labels) * settings.train_eval_fraction), settings.train_seed
        )
        scores: dict[str, dict[str, float | int | str | None]] = {}
        for candidate in build_candidates(settings):
            started = time.perf_counter()
            fitted = candidate.fit(features.iloc[fit_rows], labels[fit_rows], settings.train_seed)
            seconds = time.perf_counter() - started
            predict = fitted.pipeline.predict
            scores[candidate.name] = {
                "eval": float((predict(features.iloc[eval_rows]) == labels[eval_rows]).mean()),
                "held_out": float((predict(held_x) == held_y).mean()),
                "fit_s": round(seconds, 1),
                "rounds": fitted.params.get("best_iteration"),
                "refit_rounds": fitted.params.get("refit_rounds"),
                "stopped_by": fitted.params.get("stopped_by"),
            }
        champion = max(scores, key=lambda name: float(scores[name]["eval"] or 0))
        print(
            json.dumps(
                {
                    "size": size,
                    "pool_rows": len(labels),
                    "fit_rows": len(fit_rows),
                    "held_out_rows": len(held_y),
                    "champion": champion,
                    "champion_held_out": round(float(scores[champion]["held_out"] or 0), 4),
                    "candidates": scores,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
