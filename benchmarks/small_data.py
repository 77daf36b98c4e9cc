"""Accuracy by training size, as a course group gets its data, on a held-out split of our own.

The shared data set (297,655 rows, shuffled) cut as the course's server cuts it: B = N // 10
rows per slice, group g served `rows[g*B:(g+1)*B]`. Slice 0 is served to no group: it is the
held-out split here, never read while choosing anything. Training pools: one batch (group 1's
slice, what a group gets from the course), three (slices 1-3), all (every slice but the held-out
one). Variants are compared with another held-out slice (`--held-out-slice 8`), never slice 0.

`--holdout-hash 4` is the full-data check instead: the held-out rows are those whose content hash
(the store's dedup key) is 0 modulo 4 (~25%, the same rows whatever the order or the store), and
the pool is every other row. `--validate` scores on a tenth of that pool instead (content hash
// 4 modulo 10 is 0) and fits on the rest: what variants are compared on, so the 25% stays unread.

Each pool goes through what `forestops train` does: the content-hash TRAIN_EVAL_FRACTION split, the
candidates fitted on the rest, the champion chosen on that evaluation split, then the champion
fitted again with the evaluation rows where the candidate does so (`Candidate.refit_with`); every
fitted candidate is scored on the held-out rows, the champion as it is served. Logistic regression
and SVC are left out by default (0.72 / 0.78 on all rows, FIELD_NOTES: never the champion).

    .venv/bin/python benchmarks/small_data.py [--sizes one,three,all] [--held-out-slice 0]
    .venv/bin/python benchmarks/small_data.py --holdout-hash 4 [--validate] [--threads 2]

Prints one JSON line per pool.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from forestops import contract
from forestops.config import Settings
from forestops.modeling.candidates import build_candidates, evaluation_split
from forestops.source.dataset import read_dataset
from forestops.store.loader import content_hashes

ROOT = Path(__file__).resolve().parents[1]
DATASET = Path(os.environ.get("FORESTOPS_DATASET", ROOT.parent / "shared/data/covertype.csv.gz"))
SLICES = {"one": [1], "three": [1, 2, 3], "all": list(range(11))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="one,three,all")
    parser.add_argument("--held-out-slice", type=int, default=0)
    parser.add_argument("--holdout-hash", type=int, help="hold out rows whose hash is 0 mod this")
    parser.add_argument("--validate", action="store_true", help="with --holdout-hash: see above")
    parser.add_argument("--candidates", default="lightgbm,random_forest")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--time-budget-s", type=float, default=86_400)
    args = parser.parse_args()
    frame = read_dataset(DATASET)
    # One thread and no time budget by default: on a shared, busy machine LightGBM's OpenMP threads
    # spin (61 rounds in 300 s on 27k rows), and the budget would then decide the rounds, not the data.
    settings = Settings(
        train_candidates=args.candidates,
        train_n_jobs=args.threads,
        lightgbm_time_budget_s=args.time_budget_s,
    )
    for name, pool, held_out in _pools(frame, args):
        print(json.dumps({"pool": name, **_score_pool(settings, pool, held_out)}), flush=True)


def _pools(
    frame: pd.DataFrame, args: argparse.Namespace
) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """(name, training pool, held-out rows) for each pool asked for."""
    if args.holdout_hash:
        hashes = np.array([int(digest[:8], 16) for digest in content_hashes(frame)])
        held = hashes % args.holdout_hash == 0
        pool = ~held
        if args.validate:  # a tenth of the pool stands in for the held-out rows, never read
            held = pool & (hashes // args.holdout_hash % 10 == 0)
            pool &= ~held
        name = f"hash-{'validate' if args.validate else 'held-out'}"
        return [(name, frame[pool], frame[held])]
    batch = len(frame) // 10
    slices = [np.arange(g * batch, min((g + 1) * batch, len(frame))) for g in range(11)]
    held_out = frame.iloc[slices[args.held_out_slice]]
    pools = []
    for size in args.sizes.split(","):
        chosen = [g for g in SLICES[size] if g != args.held_out_slice]
        pools.append((size, frame.iloc[np.concatenate([slices[g] for g in chosen])], held_out))
    return pools


def _score_pool(
    settings: Settings, pool: pd.DataFrame, held_out: pd.DataFrame
) -> dict[str, object]:
    held_x = held_out.drop(columns=[contract.LABEL])
    held_y = held_out[contract.LABEL].to_numpy()
    labels = pool[contract.LABEL].to_numpy()
    features = pool.drop(columns=[contract.LABEL])
    fit_rows, eval_rows = evaluation_split(
        content_hashes(pool), labels, settings.train_eval_fraction
    )
    scores: dict[str, dict[str, float | int | str | None]] = {}
    fitted_by_name = {}
    for candidate in build_candidates(settings):
        started = time.perf_counter()
        fitted = candidate.fit(features.iloc[fit_rows], labels[fit_rows], settings.train_seed)
        seconds = time.perf_counter() - started
        predict = fitted.pipeline.predict
        fitted_by_name[candidate.name] = candidate, fitted
        scores[candidate.name] = {
            "eval": float((predict(features.iloc[eval_rows]) == labels[eval_rows]).mean()),
            "held_out": float((predict(held_x) == held_y).mean()),
            "fit_s": round(seconds, 1),
            "rounds": fitted.params.get("best_iteration"),
            "refit_rounds": fitted.params.get("refit_rounds"),
            "stopped_by": fitted.params.get("stopped_by"),
        }
    champion = max(scores, key=lambda name: float(scores[name]["eval"] or 0))
    candidate, fitted = fitted_by_name[champion]
    started = time.perf_counter()
    served = candidate.refit_with(fitted, features, labels, settings.train_seed) or fitted
    refit_seconds = time.perf_counter() - started
    return {
        "pool_rows": len(labels),
        "fit_rows": len(fit_rows),
        "held_out_rows": len(held_y),
        "champion": champion,
        "champion_held_out": round(float((served.pipeline.predict(held_x) == held_y).mean()), 4),
        "champion_rounds": served.params.get("refit_rounds") or served.params.get("best_iteration"),
        "champion_refit_s": round(refit_seconds, 1) if served is not fitted else None,
        "candidates": scores,
    }


if __name__ == "__main__":
    main()
