"""Our inference service against `mlflow models serve`, same champion, same client, side by side.

    .venv/bin/python benchmarks/serve_bench.py [--rows 50000] [--model-uri models:/forest-cover@champion]

Without --model-uri it fits a production-like champion first: the training pipeline's LightGBM
candidate (its settings: 255 leaves, lambda_l2 1, early stopping, time budget) on `--rows` rows of
the shared data, logged with `log_forest_model`, registered and aliased champion in a sqlite
MLflow under a temporary FORESTOPS_HOME. Three servers run as their own process with one worker
on loopback: `forestops serve` on the compiled form of the champion (the default,
INFERENCE_RUNTIME=auto, measured once the service reports it), `forestops serve` on the LightGBM
booster (INFERENCE_RUNTIME=native), and `mlflow models serve --env-manager local` (the baseline);
a scikit-learn forest champion (`--home` of a `forestops run` whose trees won) has one forestops
server, its runtime `forest`.
For each it measures single-record latency (p50/p99) at concurrency 1 and 16, server CPU per
request, and batch throughput with 1,000-record requests, compares the answers with the
baseline's, and prints a markdown table with the ratios (for benchmarks/RESULTS.md). The client
is Python (httpx, one connection per thread) on the same 2 cores, so absolute latencies include
its cost; the ratios compare like with like.
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd

from forestops import contract
from forestops.config import Settings
from forestops.store.database import upgrade
from forestops.webserver import free_port

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = ROOT.parent / "shared/data/covertype.csv.gz"
JSON = {"Content-Type": "application/json"}
WINDOW_CASES = ("shipped library", "compiled here")


def fit_champion(settings: Settings, dataset: Path, rows: int) -> dict[str, Any]:
    """Fit, log, register and alias the training pipeline's LightGBM candidate."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from forestops.modeling.candidates import lightgbm
    from forestops.modeling.integrity import sign_logged_model
    from forestops.modeling.package import ForestCoverModel, log_forest_model
    from forestops.modeling.tracking import PRIMARY_METRIC, TAG_CANDIDATE, TAG_KIND
    from forestops.serving.shipped_forest import ship

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
    ) as run:
        mlflow.log_params(fitted.params)
        mlflow.log_metric(PRIMARY_METRIC, accuracy)
        info = log_forest_model(fitted.pipeline)
    sign_logged_model(settings, client, info.model_id)  # serving loads only what training signed
    shipped = ship(settings, client, run.info.run_id, ForestCoverModel(fitted.pipeline))
    version = mlflow.register_model(info.model_uri, settings.model_name)
    client.set_registered_model_alias(settings.model_name, settings.champion_alias, version.version)
    booster = fitted.pipeline.named_steps["model"].booster_
    return {
        "rows": rows,
        "holdout_accuracy": accuracy,
        "trees": booster.num_trees(),
        "fit_seconds": round(fitted.fit_seconds, 1),
        "best_iteration": fitted.params.get("best_iteration"),
        "run_id": run.info.run_id,
        "shipped": shipped,
    }


def champion_of(settings: Settings) -> dict[str, Any]:
    """What fit_champion reported, read back from the store it left (for --home)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri)
    version = client.get_model_version_by_alias(settings.model_name, settings.champion_alias)
    run = client.get_run(str(version.run_id))
    return {**run.data.params, **run.data.metrics, "run_id": run.info.run_id}


def start(
    command: list[str],
    env: dict[str, str],
    probe: str,
    processes: list[subprocess.Popen[bytes]],
    timeout: float = 180,
) -> subprocess.Popen[bytes]:
    """Start a server in its own process group (appended to `processes`) and wait for `probe`.

    Its output goes to a file, never to an unread pipe: a server whose log fills a pipe blocks.
    """
    output = tempfile.TemporaryFile()  # noqa: SIM115 - open for as long as the server runs
    process = subprocess.Popen(
        command,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    processes.append(process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output.seek(0)
            raise RuntimeError(f"{command[0]} exited: {output.read().decode()[-2000:]}")
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
    with httpx.Client(headers=JSON, timeout=300) as http:  # one keep-alive connection, as above
        http.post(url, content=batches[0]).raise_for_status()  # warm the connection
        cpu = group_cpu_seconds(pgid)
        started = time.perf_counter()
        for body in batches:
            http.post(url, content=body).raise_for_status()
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
    parser.add_argument(
        "--home", type=Path, help="reuse the champion an earlier run of this script fitted there"
    )
    parser.add_argument("--single-requests", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=10, help="1,000-record requests")
    parser.add_argument(
        "--window",
        type=float,
        default=0,
        help="also measure a new replica's first WINDOW seconds, with and without the compiled "
        "forest training shipped (issue 16); 0: skip",
    )
    parser.add_argument(
        "--window-cases",
        default=",".join(WINDOW_CASES),
        help="which replicas --window starts (comma-separated); a full-data champion compiled "
        "here at idle priority takes many minutes before its steady state",
    )
    args = parser.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="serve-bench-"))
    settings = Settings(forestops_home=home, model_poll_interval_s=0)
    if args.home:
        model = champion_of(settings)
        model_uri = f"models:/{settings.model_name}@{settings.champion_alias}"
    elif args.model_uri:
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
    upgrade(settings.database_url)  # the prediction log writes there, as under `forestops up`

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
    bin_dir = Path(sys.executable).parent
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"  # mlflow execs `uvicorn` by name
    processes: list[subprocess.Popen[bytes]] = []
    try:
        windows = (
            promotion_windows(
                bin_dir, env, settings, model, records, args.window, processes, args.window_cases
            )
            if args.window and "run_id" in model
            else {}
        )
        url, runtime = serve_ours(bin_dir, env, "auto", processes)
        servers: dict[str, Server] = {f"forestops serve ({runtime})": (url, encode_ours)}
        if runtime == "compiled":  # the booster it was compiled from, for comparison
            servers["forestops serve (lightgbm)"] = (
                serve_ours(bin_dir, env, "native", processes)[0],
                encode_ours,
            )
        servers["mlflow models serve"] = serve_mlflow(bin_dir, env, model_uri, processes)
        if windows:
            url, encode = servers["mlflow models serve"]
            windows["mlflow models serve"] = window(url, encode, records, min(args.window, 30))
        check = records[: 1000 * args.batches]
        answers = {
            name: probabilities(url, encode, check) for name, (url, encode) in servers.items()
        }
        results = {
            name: measure(name, url, process.pid, encode, records, args)
            for (name, (url, encode)), process in zip(servers.items(), processes, strict=True)
        }
    finally:
        for process in processes:  # the whole group: mlflow runs uvicorn as a child
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(60)
    print(report(model, results, answers, args))
    if windows:
        print(report_windows(windows, args.window))


Server = tuple[str, Callable[[list[dict[str, Any]]], bytes]]


def serve_ours(
    bin_dir: Path,
    env: dict[str, str],
    inference_runtime: str,
    processes: list[subprocess.Popen[bytes]],
    prefix: Sequence[str] = (),
) -> tuple[str, str]:
    """`forestops serve` with INFERENCE_RUNTIME=`inference_runtime`, once it answers with its
    final runtime (a LightGBM champion's compiled form is built after start-up): its URL and
    that runtime.

    `prefix` goes before the command (locust_limited's cgroup wrapper)."""
    port = free_port()
    start(
        [*prefix, str(bin_dir / "forestops"), "serve", "--port", str(port)],
        {**env, "INFERENCE_RUNTIME": inference_runtime},
        f"http://127.0.0.1:{port}/health",
        processes,
    )
    key = env.get("API_KEYS", "").split(",")[0]
    runtime = settled_runtime(port, {"X-API-Key": key} if key else {}, inference_runtime)
    return f"http://127.0.0.1:{port}/predict", runtime


def settled_runtime(port: int, headers: dict[str, str], inference_runtime: str = "auto") -> str:
    """The runtime a replica serves once it is done preparing: under `auto`, a LightGBM booster
    is only a stage until it is compiled (unless /metadata's runtime_note says it never will be);
    a forest, the compiled form or the pyfunc model are final from the start."""
    deadline = time.monotonic() + 1800
    while True:
        metadata = httpx.get(f"http://127.0.0.1:{port}/metadata", headers=headers).json()
        pending = metadata["runtime"] == "lightgbm" and not metadata["runtime_note"]
        if inference_runtime != "auto" or not pending:
            return str(metadata["runtime"])
        if time.monotonic() > deadline:
            raise TimeoutError("forestops serve never switched to its compiled form")
        time.sleep(0.5)


def serve_mlflow(
    bin_dir: Path, env: dict[str, str], model_uri: str, processes: list[subprocess.Popen[bytes]]
) -> Server:
    port = free_port()
    command = [str(bin_dir / "mlflow"), "models", "serve", "-m", model_uri]
    command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    start(command, env, f"http://127.0.0.1:{port}/ping", processes)
    return f"http://127.0.0.1:{port}/invocations", encode_theirs


def probabilities(
    url: str, encode: Callable[[list[dict[str, Any]]], bytes], records: list[dict[str, Any]]
) -> np.ndarray:
    """The (n, 7) probabilities a server gives for `records`, asked 1,000 at a time."""
    parts = []
    for i in range(0, len(records), 1000):
        answer = httpx.post(url, content=encode(records[i : i + 1000]), headers=JSON, timeout=300)
        body = answer.raise_for_status().json()
        if (
            "predictions" in body
            and body["predictions"]
            and "probabilities" in body["predictions"][0]
        ):
            parts.append(np.array([p["probabilities"] for p in body["predictions"]]))
        else:
            columns = [f"probability_{i}" for i in contract.CLASS_IDS]
            parts.append(pd.DataFrame(body["predictions"])[columns].to_numpy())
    return np.concatenate(parts)


def promotion_windows(
    bin_dir: Path,
    env: dict[str, str],
    settings: Settings,
    model: dict[str, Any],
    records: list[dict[str, Any]],
    seconds: float,
    processes: list[subprocess.Popen[bytes]],
    cases: str,
) -> dict[str, dict[str, float]]:
    """A new replica's first `seconds` after the champion appeared, served (a) with the library
    training shipped and (b) with none (the tag removed, so it compiles at idle priority), then
    the same replica once compiled (steady state); `main` adds `mlflow models serve` on the same
    loop."""
    from mlflow.tracking import MlflowClient

    from forestops.modeling.integrity import signing_key
    from forestops.modeling.tracking import TAG_COMPILED_FOREST
    from forestops.serving.shipped_forest import platform_key

    client = MlflowClient(settings.mlflow_tracking_uri)
    tag = TAG_COMPILED_FOREST + platform_key()
    signature = client.get_run(model["run_id"]).data.tags.get(tag)
    shared = {
        **env,
        "DATABASE_URL": settings.database_url,
        "INFERENCE_RUNTIME": "auto",
        "MODEL_SIGNING_KEY": signing_key(settings).decode(),  # the replicas' homes hold none
    }
    out: dict[str, dict[str, float]] = {}
    try:
        for case in (case for case in WINDOW_CASES if case in cases.split(",")):
            if case == "shipped library" and not signature:
                continue  # training shipped nothing: a scikit-learn forest has nothing to compile
            if case == "compiled here" and signature:
                client.delete_tag(model["run_id"], tag)
            replica_home = tempfile.mkdtemp(prefix="serve-window-")  # an empty model cache
            port = free_port()
            process = start(
                [str(bin_dir / "forestops"), "serve", "--port", str(port)],
                {**shared, "FORESTOPS_HOME": replica_home},
                f"http://127.0.0.1:{port}/health",
                processes,
                timeout=900,
            )
            url = f"http://127.0.0.1:{port}/predict"
            first = window(url, encode_ours, records, seconds)
            runtime = settled_runtime(port, {})
            label = case if runtime == "compiled" else f"{runtime} runtime (no compiling)"
            out[f"{label}: first {seconds:g} s"] = first
            out[f"{label}: steady"] = window(url, encode_ours, records, min(seconds, 30))
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(60)
            processes.remove(process)
    finally:
        if signature:
            client.set_tag(model["run_id"], tag, signature)
    return out


def window(
    url: str,
    encode: Callable[[list[dict[str, Any]]], bytes],
    records: list[dict[str, Any]],
    seconds: float,
) -> dict[str, float]:
    """From now for `seconds`, on one keep-alive connection: a 1,000-record request, then ten
    single records, again and again: batch rows/s and the p99 of both kinds of request."""
    batch = encode(records[:1000])
    singles = [encode([r]) for r in records[1000:1200]]
    batch_s: list[float] = []
    single_s: list[float] = []
    with httpx.Client(headers=JSON, timeout=300) as http:
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            sent = time.perf_counter()
            http.post(url, content=batch).raise_for_status()
            batch_s.append(time.perf_counter() - sent)
            for body in singles[len(batch_s) % 20 * 10 :][:10]:
                sent = time.perf_counter()
                http.post(url, content=body).raise_for_status()
                single_s.append(time.perf_counter() - sent)
    result = {
        "batch_rows_per_s": 1000 * len(batch_s) / sum(batch_s),
        "batch_p99_ms": percentile_ms(batch_s, 99),
        "single_p50_ms": percentile_ms(single_s, 50),
        "single_p99_ms": percentile_ms(single_s, 99),
    }
    print(f"window {url}: {result}", file=sys.stderr)
    return result


def report_windows(windows: dict[str, dict[str, float]], seconds: float) -> str:
    names = list(windows)
    baseline = windows["mlflow models serve"]["batch_rows_per_s"]
    lines = [
        "",
        f"A new replica from the moment it answers (a champion just promoted): {seconds:g} s of",
        "1,000-record requests, each followed by ten single records, on one connection; steady:",
        "the same replica once it serves compiled.",
        "",
        "| replica | batch rows/s | vs mlflow | batch p99 (ms) | single p50 (ms) | single p99 (ms) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        row = windows[name]
        lines.append(
            f"| {name} | {row['batch_rows_per_s']:,.0f} | {row['batch_rows_per_s'] / baseline:.1f}x"
            f" | {row['batch_p99_ms']:.1f} | {row['single_p50_ms']:.2f} | {row['single_p99_ms']:.2f} |"
        )
    return "\n".join(lines)


def report(
    model: dict[str, Any],
    results: dict[str, dict[str, float]],
    answers: dict[str, np.ndarray],
    args: argparse.Namespace,
) -> str:
    names = list(results)
    baseline = results["mlflow models serve"]
    reference = answers["mlflow models serve"]
    lines = [
        f"Champion: {model}. The same model version in every server, one worker each, loopback,",
        f"2 cores; {args.single_requests} single-record requests per concurrency level,",
        f"{args.batches} requests of 1,000 records.",
        "",
        f"Answers compared with `mlflow models serve` on the {len(reference):,} batch records:",
    ]
    for name in names[:-1]:
        same = float((answers[name].argmax(axis=1) == reference.argmax(axis=1)).mean())
        delta = float(np.abs(answers[name] - reference).max())
        lines.append(
            f"- {name}: same class on {same:.2%}, largest probability difference {delta:.2g}"
        )
    lines += [
        "",
        "| metric | "
        + " | ".join(names)
        + " | "
        + " | ".join(f"{name.removeprefix('forestops serve ')} vs mlflow" for name in names[:-1])
        + " |",
        "|---" * (len(names) * 2) + "|",
    ]
    lower_is_better = (
        ("p50_c1", "single record p50, c=1 (ms)"),
        ("p99_c1", "single record p99, c=1 (ms)"),
        ("cpu_ms_c1", "server CPU per single-record request, c=1 (ms)"),
        ("p50_c16", "single record p50, c=16 (ms)"),
        ("p99_c16", "single record p99, c=16 (ms)"),
        ("cpu_ms_c16", "server CPU per single-record request, c=16 (ms)"),
    )
    higher_is_better = (
        ("batch_rows_per_s", "batch throughput, 1,000-record requests (rows/s)"),
        ("batch_rows_per_cpu_s", "batch rows per server CPU second"),
    )
    for key, label in (*lower_is_better, *higher_is_better):
        values = " | ".join(f"{results[name][key]:,.2f}" for name in names)
        if (key, label) in lower_is_better:
            ratios = [baseline[key] / results[name][key] for name in names[:-1]]
        else:
            ratios = [results[name][key] / baseline[key] for name in names[:-1]]
        lines.append(f"| {label} | {values} | " + " | ".join(f"{r:.1f}x" for r in ratios) + " |")
    lines.append("")
    lines.append("Ratios are the advantage of each forestops runtime over `mlflow models serve`")
    lines.append("(latency and CPU: theirs / ours; throughput: ours / theirs).")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
