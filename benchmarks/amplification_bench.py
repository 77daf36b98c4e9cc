"""Small bad requests against `forestops serve`: how big, how slow, how much memory they cost.

    .venv/bin/python benchmarks/amplification_bench.py [--rows 5000]

Fits the training pipeline's LightGBM on `--rows` rows (serve_bench's `fit_champion`, then signed
as training signs), starts `forestops serve` (booster runtime) in its own process, then sends
each body of issue 20 once and prints a markdown table: status, answer bytes, seconds to the
answer, the server's RSS before and after and its peak during the request (VmHWM, reset before
each request), and the slowest `/health` answer seen while the bad request was in flight (a
thread polls it every 50 ms).
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

import httpx
from serve_bench import DEFAULT_DATASET, fit_champion, start

from forestops import contract
from forestops.config import Settings
from forestops.webserver import free_port

Attack = Callable[[httpx.Client], httpx.Response]


def empty_records(client: httpx.Client) -> httpx.Response:
    body = b"[" + b",".join([b"{}"] * 10_000) + b"]"  # 30 KB
    return client.post("/predict", content=body, headers={"Content-Type": "application/json"})


def long_strings(client: httpx.Client) -> httpx.Response:
    value = b'"' + b"x" * 1650 + b'"'
    record = b'{"elevation":' + value + b"}"
    body = b"[" + b",".join([record] * 10_000) + b"]"  # 16.7 MB, just under MAX_BODY_BYTES
    return client.post("/predict", content=body, headers={"Content-Type": "application/json"})


def wide_header(client: httpx.Client) -> httpx.Response:
    upload = ",".join(["a"] * 1_000_000).encode() + b"\n"  # 2 MB, 1M columns
    return client.post("/predict/csv", files={"file": ("wide.csv", upload, "text/csv")})


def _good_csv(cell: str | None = None) -> bytes:
    names = list(contract.FEATURE_NAMES)
    values = ["2596", "51", "3", "258", "0", "510", "221", "232", "148", "6279", "Rawah", "C7745"]
    if cell is not None:
        values[0] = cell
    return f"{','.join(names)}\n{','.join(values)}\n".encode()


def long_cell(client: httpx.Client) -> httpx.Response:
    upload = _good_csv("9" * 200_000)  # over the csv module's 131,072-character field limit
    return client.post("/predict/csv", files={"file": ("cell.csv", upload, "text/csv")})


def chinese_filename(client: httpx.Client) -> httpx.Response:
    return client.post("/predict/csv", files={"file": ("数据.csv", _good_csv(), "text/csv")})


ATTACKS: dict[str, Attack] = {
    "10k empty records `[{}, ...]` (30 KB), /predict": empty_records,
    "10k records with one 1.6 KB string (16 MB), /predict": long_strings,
    "CSV header of 1M columns (2 MB), /predict/csv": wide_header,
    "CSV cell of 200,000 characters, /predict/csv": long_cell,
    "CSV upload named `数据.csv`, /predict/csv": chinese_filename,
}


def memory_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def slowest_health(url: str, stop: threading.Event, seen: list[float]) -> None:
    with httpx.Client(base_url=url, timeout=120) as client:
        while not stop.is_set():
            began = time.perf_counter()
            client.get("/health")
            seen.append(time.perf_counter() - began)
            stop.wait(0.05)


def sign_champion(settings: Settings) -> None:
    """Sign the champion as the training job does (the service refuses an unsigned model)."""
    from mlflow.tracking import MlflowClient

    from forestops.modeling.integrity import sign_logged_model

    client = MlflowClient(settings.mlflow_tracking_uri)
    version = client.get_model_version_by_alias(settings.model_name, settings.champion_alias)
    model_id = client.get_run(version.run_id).outputs.model_outputs[0].model_id
    sign_logged_model(settings, client, model_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--dataset", type=Path, default=Path(os.environ.get("FORESTOPS_DATASET", DEFAULT_DATASET))
    )
    parser.add_argument("--rows", type=int, default=5_000, help="training rows for the champion")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="amplification-bench-"))
    settings = Settings(forestops_home=home, model_poll_interval_s=0, prediction_log_enabled=False)
    fit_champion(settings, args.dataset, args.rows)
    sign_champion(settings)
    port = free_port()
    env = {
        **os.environ,
        "FORESTOPS_HOME": str(home),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MODEL_POLL_INTERVAL_S": "0",
        "PREDICTION_LOG_ENABLED": "false",
        "INFERENCE_RUNTIME": "native",
    }
    url = f"http://127.0.0.1:{port}"
    processes: list[subprocess.Popen[bytes]] = []
    server = start(
        [str(Path(sys.executable).parent / "forestops"), "serve", "--port", str(port)],
        env,
        f"{url}/health",
        processes,
    )
    print("| body | status | answer bytes | seconds | RSS before MB | RSS after MB | peak during "
          "MB | slowest /health s |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    try:
        with httpx.Client(base_url=url, timeout=600) as client:
            for name, attack in ATTACKS.items():
                before = memory_mb(server.pid)
                Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
                stop, seen = threading.Event(), [0.0]
                poller = threading.Thread(target=slowest_health, args=(url, stop, seen))
                poller.start()
                began = time.perf_counter()
                response = attack(client)
                seconds = time.perf_counter() - began
                stop.set()
                poller.join()
                after = memory_mb(server.pid)
                print(
                    f"| {name} | {response.status_code} | {len(response.content):,} | "
                    f"{seconds:.2f} | {before['VmRSS']:.0f} | {after['VmRSS']:.0f} | "
                    f"{after['VmHWM']:.0f} | {max(seen):.2f} |",
                    flush=True,
                )
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(60)


if __name__ == "__main__":
    main()
