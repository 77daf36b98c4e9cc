"""What `?explain=` costs: single-record latency of `forestops serve` with and without it.

    .venv/bin/python benchmarks/explain_bench.py [--rows 20000] [--max-rounds 1000] [--leaves 255]
        [--home DIR] [--runtime compiled|lightgbm]

It fits the training pipeline's LightGBM candidate like serve_bench.py does (its helpers; the
candidate's settings, early stopping included; `--max-rounds`/`--leaves` shrink it), registers it
champion in a sqlite MLflow under a temporary FORESTOPS_HOME (or takes `--home`'s champion), runs
`forestops serve` as its own process on loopback once it predicts with `--runtime`, asks one
explanation and waits until `/metadata` says the compiled TreeSHAP kernel answers them (whatever
`--runtime`; LightGBM's pred_contrib answers until then), and measures one-record requests at
concurrency 1: plain, `?explain=true`, `?explain=all`. It also times `Explainer.explain` alone in
this process (one record, its predicted class, one thread and two), and prints a markdown table
for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from serve_bench import (
    DEFAULT_DATASET,
    JSON,
    champion_of,
    encode_ours,
    fit_champion,
    latencies,
    percentile_ms,
    serve_ours,
)

from forestops import contract
from forestops.config import Settings
from forestops.store.database import upgrade


def explainer_alone_ms(
    settings: Settings, records: pd.DataFrame, repeats: int, threads: int
) -> list[float]:
    """`Explainer.explain` on one record at a time, for its predicted class (what `explain=true`
    asks), the champion loaded as the service loads it."""
    from forestops.modeling.features import frame_to_arrays
    from forestops.serving.holder import ModelHolder

    holder = ModelHolder(settings)
    holder.refresh()
    assert holder.current is not None and holder.current.explainer is not None, holder.problem
    explainer = holder.current.explainer
    print(f"compiled TreeSHAP kernel: {explainer.fast is not None}", file=sys.stderr)  # built now
    arrays = frame_to_arrays(records)
    labels = holder.current.predict(*arrays).argmax(axis=1)
    times = []
    for index in range(repeats):
        row = tuple(a[index % len(records) : index % len(records) + 1] for a in arrays)
        label = labels[index % len(records) : index % len(records) + 1]
        started = time.perf_counter()
        explainer.explain(*row, only=label, threads=threads)
        times.append((time.perf_counter() - started) * 1000)
    return times


def wait_for_kernel(url: str, body: bytes) -> float:
    """Ask one explanation (the service then builds its kernel), wait until `/metadata` says the
    kernel answers; the seconds that took."""
    started = time.monotonic()
    httpx.post(f"{url}?explain=true", content=body, headers=JSON).raise_for_status()
    metadata = url.removesuffix("/predict") + "/metadata"
    while httpx.get(metadata).json()["explanations"] != "compiled":
        if time.monotonic() - started > 600:
            raise TimeoutError("the service never built its TreeSHAP kernel")
        time.sleep(0.2)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--dataset", type=Path, default=Path(os.environ.get("FORESTOPS_DATASET", DEFAULT_DATASET))
    )
    parser.add_argument("--rows", type=int, default=20_000, help="training rows for the champion")
    parser.add_argument("--max-rounds", type=int, default=1000)
    parser.add_argument("--leaves", type=int, default=255)
    parser.add_argument("--requests", type=int, default=500, help="per mode")
    parser.add_argument("--runtime", choices=["compiled", "lightgbm"], default="compiled")
    parser.add_argument(
        "--home",
        type=Path,
        help="the champion of this FORESTOPS_HOME instead (e.g. forestops run's)",
    )
    args = parser.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="explain-bench-"))
    settings = Settings(
        forestops_home=home,
        model_poll_interval_s=0,
        lightgbm_max_rounds=args.max_rounds,
        lightgbm_num_leaves=args.leaves,
        inference_runtime="native",  # no compiler child in this process
    )
    model = champion_of(settings) if args.home else fit_champion(settings, args.dataset, args.rows)
    print(f"champion: {model}", file=sys.stderr)
    upgrade(settings.database_url)

    frame = pd.read_csv(args.dataset, skiprows=range(1, 200_001), nrows=args.requests)
    frame = frame.rename(columns=contract.canonical_column)[list(contract.FEATURE_NAMES)]
    bodies = [encode_ours([record]) for record in frame.to_dict(orient="records")]
    alone = {
        threads: explainer_alone_ms(settings, frame, args.requests, threads) for threads in (1, 2)
    }

    env = {
        **os.environ,
        "FORESTOPS_HOME": str(home),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MODEL_POLL_INTERVAL_S": "0",
    }
    bin_dir = Path(sys.executable).parent
    processes: list[subprocess.Popen[bytes]] = []
    try:
        inference_runtime = "native" if args.runtime == "lightgbm" else "auto"
        url, _ = serve_ours(bin_dir, env, inference_runtime, processes)
        kernel_built = wait_for_kernel(url, bodies[0])
        modes = {
            "plain": url,
            "explain=true": f"{url}?explain=true",
            "explain=all": f"{url}?explain=all",
        }
        measured = {mode: latencies(target, bodies, 1) for mode, target in modes.items()}
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(60)

    print(
        f"Champion: {model}; served {args.runtime}; {args.requests} one-record requests per mode, "
        f"concurrency 1; the service's kernel was built {kernel_built:.1f} s after the first "
        "explanation was asked (LightGBM answered until then).\n"
    )
    print("| one record | p50 (ms) | p99 (ms) |")
    print("|---|---:|---:|")
    for mode, values in measured.items():
        print(
            f"| `/predict` {mode} | {percentile_ms(values, 50):.2f} | {percentile_ms(values, 99):.2f} |"
        )
    for threads, values in alone.items():
        print(
            f"| `Explainer.explain` alone, predicted class, {threads} thread(s) (in process) | "
            f"{np.percentile(values, 50):.2f} | {np.percentile(values, 99):.2f} |"
        )


if __name__ == "__main__":
    main()
