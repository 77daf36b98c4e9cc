"""Our inference service against `mlflow models serve`, same champion, same client, side by side.

    .venv/bin/python benchmarks/serve_bench.py [--rows 50000] [--model-uri models:/forest-cover@champion]

Without --model-uri it fits a production-like champion first: the training pipeline's LightGBM
candidate (its settings: 255 leaves, lambda_l2 1, early stopping, time budget) on `--rows` rows of
the shared data, logged with `log_forest_model`, registered and aliased champion in a sqlite
MLflow under a temporary FORESTOPS_HOME. Both servers run as their own process with one worker
on loopback: `forestops serve` and `mlflow models serve --env-manager local`. For each it
measures single-record latency (p50/p99) at concurrency 1 and 16 and batch throughput with
1,000-record requests, checks both return the same probabilities, and prints a markdown table
with the ratios (for benchmarks/RESULTS.md). The client is Python (httpx, one connection per
thread) on the same 2 cores, so absolute latencies include its cost; the ratios compare like
with like.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd

from forestops import contract
from forestops.config import Settings
from forestops.webserver import free_port

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = ROOT.parent / "shared/data/covertype.csv.gz"
JSON = {"Content-Type": "application/json"}


def fit_champion(settings: Settings, dataset: Path, rows: int) -> dict[str, Any]:
    """Fit, log, register and alias the training pipeline's LightGBM candidate."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from forestops.modeling.candidates import lightgbm
    from forestops.modeling.package import log_forest_model
    from forestops.modeling.tracking import PRIMARY_METRIC, TAG_CANDIDATE, TAG_KIND

    frame = pd.read_csv(dataset, nrows=rows + 20_000).rename(columns=contract.canonical_column)
    train, holdout = frame.iloc[:rows], frame.iloc[rows:]
    features = list(contract.FEATURE_NAMES)
    fitted = lightgbm(settings).fit(
        train[features], train[contract.LABEL].to_numpy(), settings.train_seed
    )
    accuracy = float((fitted.pipeline.predict(holdout[features]) == holdout[contract.LABEL]).mean())
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment_id = client.create_experiment(
        settings.mlflow_experiment_name, artifact_location=settings.mlflow_artifacts_dir.as_uri()
    )
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    with mlflow.start_run(
        experiment_id=experiment_id, tags={TAG_KIND: "candidate", TAG_CANDIDATE: "lightgbm"}
    ):
        mlflow.log_params(fitted.params)
        mlflow.log_metric(PRIMARY_METRIC, accuracy)
        info = log_forest_model(fitted.pipeline)
    version = mlflow.register_model(info.model_uri, settings.model_name)
    client.set_registered_model_alias(settings.model_name, settings.champion_alias, version.version)
    booster = fitted.pipeline.named_steps["model"].booster_
    return {
        "rows": rows,
        "holdout_accuracy": accuracy,
        "trees": booster.num_trees(),
        "fit_seconds": round(fitted.fit_seconds, 1),
        "best_iteration": fitted.params.get("best_iteration"),
    }


def start(
    command: list[str],
    env: dict[str, str],
    probe: str,
    processes: list[subprocess.Popen[bytes]],
    timeout: float = 180,
) -> subprocess.Popen[bytes]:
    """Start a server in its own process group (appended to `processes`) and wait for `probe`."""
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    processes.append(process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(probe, timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{probe} not ready after {timeout}s")


def latencies(url: str, bodies: list[bytes], concurrency: int) -> list[float]:
    """Per-request seconds, `concurrency` threads each with its own keep-alive connection."""
    results: list[float] = []
    lock = threading.Lock()
    chunks = [bodies[i::concurrency] for i in range(concurrency)]

    def worker(chunk: list[bytes]) -> None:
        mine = []
        with httpx.Client(headers=JSON, timeout=60) as http:
            http.post(url, content=chunk[0]).raise_for_status()  # warm the connection
            for body in chunk:
                started = time.perf_counter()
                http.post(url, content=body).raise_for_status()
                mine.append(time.perf_counter() - started)
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def encode_ours(records: list[dict[str, Any]]) -> bytes:
    return orjson.dumps(records[0] if len(records) == 1 else records)


def encode_theirs(records: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"dataframe_records": records})


def percentile_ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q) * 1000)


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every process in a process group (the server and its workers):
    unlike wall time, this does not move with the neighbours' load on a shared machine."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # after the name: state, ppid, pgrp, ..., utime=11, stime=12
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def measure(
    name: str,
    url: str,
    pgid: int,
    encode: Callable[[list[dict[str, Any]]], bytes],
    records: list[dict[str, Any]],
    args: argparse.Namespace,
) -> dict[str, float]:
    singles = [encode([r]) for r in records[: args.single_requests]]
    out: dict[str, float] = {}
    latencies(url, singles[:200], 1)  # warm-up: connection pools, lazy imports, caches
    for concurrency in (1, 16):
        cpu = group_cpu_seconds(pgid)
        values = latencies(url, singles, concurrency)
        out[f"p50_c{concurrency}"] = percentile_ms(values, 50)
        out[f"p99_c{concurrency}"] = percentile_ms(values, 99)
        out[f"cpu_ms_c{concurrency}"] = (group_cpu_seconds(pgid) - cpu) * 1000 / len(values)
    batches = [encode(records[i * 1000 : (i + 1) * 1000]) for i in range(args.batches)]
    cpu = group_cpu_seconds(pgid)
    started = time.perf_counter()
    for body in batches:
        httpx.post(url, content=body, headers=JSON, timeout=300).raise_for_status()
    out["batch_rows_per_s"] = 1000 * len(batches) / (time.perf_counter() - started)
    out["batch_rows_per_cpu_s"] = 1000 * len(batches) / (group_cpu_seconds(pgid) - cpu)
    print(f"{name}: {out}", file=sys.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--dataset", type=Path, default=Path(os.environ.get("FORESTOPS_DATASET", DEFAULT_DATASET))
    )
    parser.add_argument("--rows", type=int, default=50_000, help="training rows for the champion")
    parser.add_argument(
        "--model-uri", help="serve this existing model instead (needs MLFLOW_TRACKING_URI)"
    )
    parser.add_argument("--single-requests", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=10, help="1,000-record requests")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    settings = Settings(forestops_home=home, model_poll_interval_s=0)
    if args.model_uri:
        settings = Settings(
            forestops_home=home,
            model_poll_interval_s=0,
            mlflow_tracking_uri=os.environ["MLFLOW_TRACKING_URI"],
        )
        model = {"model_uri": args.model_uri}
        model_uri = args.model_uri
    else:
        model = fit_champion(settings, args.dataset, args.rows)
        model_uri = f"models:/{settings.model_name}@{settings.champion_alias}"
    print(f"champion: {model}", file=sys.stderr)

    frame = pd.read_csv(
        args.dataset, skiprows=range(1, 200_001), nrows=args.single_requests + 1000 * args.batches
    )
    frame = frame.rename(columns=contract.canonical_column)[list(contract.FEATURE_NAMES)]
    records = frame.to_dict(orient="records")

    env = {
        **os.environ,
        "FORESTOPS_HOME": str(home),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MODEL_POLL_INTERVAL_S": "0",
    }
    ours_port, mlflow_port = free_port(), free_port()
    bin_dir = Path(sys.executable).parent
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"  # mlflow execs `uvicorn` by name
    processes: list[subprocess.Popen[bytes]] = []
    try:
        start(
            [str(bin_dir / "forestops"), "serve", "--port", str(ours_port)],
            env,
            f"http://127.0.0.1:{ours_port}/health",
            processes,
        )
        start(
            [
                str(bin_dir / "mlflow"),
                "models",
                "serve",
                "-m",
                model_uri,
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(mlflow_port),
                "-w",
                "1",
            ],
            env,
            f"http://127.0.0.1:{mlflow_port}/ping",
            processes,
        )
        ours_url = f"http://127.0.0.1:{ours_port}/predict"
        theirs_url = f"http://127.0.0.1:{mlflow_port}/invocations"
        check = records[:1000]
        a = np.array(
            [
                p["probabilities"]
                for p in httpx.post(
                    ours_url, content=encode_ours(check), headers=JSON, timeout=300
                ).json()["predictions"]
            ]
        )
        b = pd.DataFrame(
            httpx.post(theirs_url, content=encode_theirs(check), headers=JSON, timeout=300).json()[
                "predictions"
            ]
        )
        agree = bool(
            np.allclose(
                a, b[[f"probability_{i}" for i in contract.CLASS_IDS]].to_numpy(), atol=1e-9
            )
        )
        ours, theirs = (p.pid for p in processes)
        results = {
            "forestops serve": measure("forestops", ours_url, ours, encode_ours, records, args),
            "mlflow models serve": measure(
                "mlflow", theirs_url, theirs, encode_theirs, records, args
            ),
        }
    finally:
        for process in processes:  # the whole group: mlflow runs uvicorn as a child
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
    print(report(model, results, agree, args))


def report(
    model: dict[str, Any],
    results: dict[str, dict[str, float]],
    agree: bool,
    args: argparse.Namespace,
) -> str:
    ours, theirs = results["forestops serve"], results["mlflow models serve"]
    lines = [
        f"Champion: {model}. Same model in both servers, one worker each, loopback, 2 cores;",
        f"{args.single_requests} single-record requests per concurrency level, {args.batches} requests of 1,000 records.",
        f"Probabilities identical between the two servers on 1,000 records: {agree}.",
        "",
        "| metric | forestops serve | mlflow models serve | ratio (mlflow / ours) |",
        "|---|---|---|---|",
    ]
    for key, label in (
        ("p50_c1", "single record p50, c=1 (ms)"),
        ("p99_c1", "single record p99, c=1 (ms)"),
        ("cpu_ms_c1", "server CPU per single-record request, c=1 (ms)"),
        ("p50_c16", "single record p50, c=16 (ms)"),
        ("p99_c16", "single record p99, c=16 (ms)"),
        ("cpu_ms_c16", "server CPU per single-record request, c=16 (ms)"),
    ):
        lines.append(
            f"| {label} | {ours[key]:.2f} | {theirs[key]:.2f} | {theirs[key] / ours[key]:.1f}x |"
        )
    for key, label in (
        ("batch_rows_per_s", "batch throughput, 1,000-record requests (rows/s)"),
        ("batch_rows_per_cpu_s", "batch rows per server CPU second"),
    ):
        lines.append(
            f"| {label} | {ours[key]:,.0f} | {theirs[key]:,.0f} | "
            f"{ours[key] / theirs[key]:.1f}x (ours / mlflow) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
