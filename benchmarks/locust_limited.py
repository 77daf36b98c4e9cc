"""The most Locust users one `forestops serve` limited to 1 CPU and 512 MiB holds (p99, 0 failures).

    .venv/bin/python benchmarks/locust_limited.py [--users 50,100,200,300] [--hold-seconds 120]

Run as root (it writes cgroups). Fits the training pipeline's LightGBM on `--rows` rows of the
shared data (serve_bench's champion), registers it twice (versions 1 and 2, same artifact) and
starts ONE `forestops serve` inside a cgroup: on a cgroup v2 host `/sys/fs/cgroup/forestops-bench`
with `cpu.max` and `memory.max`; on a v1 host one group in the cpu hierarchy
(`cpu.cfs_quota_us`/`cpu.cfs_period_us`) and one in the memory hierarchy (`memory.limit_in_bytes`,
under the runner's own memory group, so whatever accounts for the runner still sees the server).
The server joins them before it execs, so its compiler children are limited too; which is why the
champion is first compiled by an unlimited server (the library is cached in FORESTOPS_HOME): the
1,169-tree champion's compilers beside the server do not fit in 512 MiB (the kernel OOM-killed the
server, 367 MB anonymous memory, then the compiler).
(`systemd-run --scope -p CPUQuota=100% -p MemoryMax=512M` does the same where systemd runs.)
API keys are on, `INFERENCE_THREADS` equals the CPU limit. The server's group, and a group of its
own for the Locust processes (no quota), weigh 10x a default process (`cpu.shares`/`cpu.weight`):
on this shared 2-core host the neighbours' jobs then do not take the CPU either side asks for, as
a Kubernetes CPU request would guarantee the pod; the quota still caps the server at 1 CPU.

`benchmarks/locustfile.py` then runs headless with `--processes` worker processes (plus the
master) at each user count of `--users` for `--step-seconds` once all users are spawned
(`--reset-stats`: the ramp is not measured); the most users whose single-record requests keep
a client p99 under `--p99-ms` with no failure of any request are held for `--hold-seconds`, and
if the hold misses, the next lower count (batches are reported beside: a 1,000-record batch alone
takes ~60 ms of CPU).
Meanwhile the champion alias flips between the two versions every `--flip-every` seconds, so the
locustfile's `/reload` really swaps models under load. Beside Locust's figures: the service's own
`/predict` latency histogram from /metrics (snapshots when all users are spawned and at the end;
percentiles as the upper bound of their bucket), the server's CPU (its process group, from /proc)
and how often the quota throttled it, the cgroup's peak memory and OOM kills, and the client's CPU
(every Locust process, start-up included, from the runner's child rusage) over its wall time, so
a reader sees whether the client or the service set the limit. Prints a markdown report.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pandas as pd
from prometheus_client.parser import text_string_to_metric_families
from serve_bench import DEFAULT_DATASET, fit_champion, group_cpu_seconds, serve_ours

from forestops.config import Settings
from forestops.store.database import upgrade

CGROUP = "forestops-bench"
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
SINGLE, BATCH = "/predict (1 record)", "/predict (100-1,000 records)"
WEIGHT = 10  # the groups' CPU weight, in default weights (a process of the neighbours has 1)


class Cgroup:
    """A CPU weight and optionally a CPU quota and memory limit: one cgroup v2 group, or on a v1
    host a group in the cpu hierarchy (and one in the memory hierarchy, under the runner's own)."""

    def __init__(self, name: str, cpus: float | None = None, memory_mib: int | None = None) -> None:
        root = Path("/sys/fs/cgroup")
        self.v2 = (root / "cgroup.controllers").exists()
        quota = str(round(cpus * 100_000)) if cpus else None
        memory = str(memory_mib * 2**20) if memory_mib else None
        if self.v2:
            (root / "cgroup.subtree_control").write_text("+cpu +memory")
            self.cpu = self.memory = root / name
            settings = {"cpu.weight": str(100 * WEIGHT), "cpu.max": quota and f"{quota} 100000"}
            settings["memory.max"] = memory
        else:
            own = next(
                line.split(":", 2)[2]
                for line in Path("/proc/self/cgroup").read_text().splitlines()
                if line.split(":")[1] == "memory"
            )
            self.cpu = root / "cpu" / name
            self.memory = root / "memory" / own.strip("/") / name if memory else self.cpu
            settings = {"cpu.shares": str(1024 * WEIGHT), "cpu.cfs_period_us": "100000"}
            settings |= {"cpu.cfs_quota_us": quota, "memory.limit_in_bytes": memory}
            settings["memory.max_usage_in_bytes"] = memory and "0"  # a reused group's peak
        written = []
        for file, value in settings.items():
            if value is not None:
                group = self.memory if file.startswith("memory") else self.cpu
                group.mkdir(exist_ok=True)
                (group / file).write_text(value)
                written.append(f"`{group / file}` = {value}")
        self.how = ", ".join(written)

    def prefix(self) -> list[str]:
        """A command prefix: the shell joins the groups, then execs the command in its place."""
        joins = " ".join(f"echo $$ > {group}/cgroup.procs;" for group in {self.cpu, self.memory})
        return ["sh", "-c", f'{joins} exec "$@"', "sh"]

    def stat(self, name: str, group: Path) -> dict[str, int]:
        lines = (group / name).read_text().splitlines()
        return {key: int(value) for key, value in (line.split() for line in lines)}

    def throttling(self) -> tuple[int, int]:
        """(CFS periods, periods in which the quota ran out) so far."""
        stat = self.stat("cpu.stat", self.cpu)
        return stat["nr_periods"], stat["nr_throttled"]

    def peak_mib(self) -> float:
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        return int((self.memory / name).read_text()) / 2**20

    def oom_kills(self) -> int:
        return self.stat("memory.events" if self.v2 else "memory.oom_control", self.memory).get(
            "oom_kill", 0
        )

    def remove(self) -> None:
        """Once the server's process group is gone (an exiting process keeps it busy briefly)."""
        for group in {self.cpu, self.memory}:
            for _ in range(50):
                try:
                    group.rmdir()
                    break
                except OSError:
                    time.sleep(0.2)


def scrape(base: str) -> tuple[dict[float, float], dict[str, float]]:
    """The service's cumulative /predict latency buckets (upper bound s -> requests) and its
    `/reload` outcomes so far (swapped, unchanged, refused, ...)."""
    buckets, reloads = {}, {}
    text = httpx.get(f"{base}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "forestops_http_request_duration_seconds_bucket":
                if labels["route"] == "/predict":
                    buckets[float(labels["le"])] = sample.value
            elif sample.name == "forestops_model_reloads_total" and labels["trigger"] == "api":
                reloads[labels["outcome"]] = sample.value
    return buckets, reloads


def bucket_ms(buckets: list[tuple[float, float]], q: float) -> float:
    """Upper bound (ms) of the histogram bucket holding the q-th percentile."""
    total = buckets[-1][1]
    return next(le for le, count in buckets if count >= total * q / 100) * 1000 if total else 0.0


def flip_champion(settings: Settings, version: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri)
    client.set_registered_model_alias(settings.model_name, settings.champion_alias, version)


def second_version(settings: Settings) -> None:
    """Version 2: the same artifact registered again, so each reload really swaps models."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri)
    first = client.get_model_version(settings.model_name, "1")
    client.create_model_version(
        settings.model_name, first.source, run_id=first.run_id, model_id=first.model_id
    )


def warm_up(base: str, settings: Settings, headers: dict[str, str]) -> None:
    """Both versions swapped in and served compiled before anything is measured: otherwise the
    first step carries the first load of version 2 and the allocator's first growth."""
    for version in ("2", "1", "2", "1"):
        flip_champion(settings, version)
        httpx.post(f"{base}/reload", headers=headers, timeout=600).raise_for_status()
        deadline = time.monotonic() + 600
        while httpx.get(f"{base}/metadata", headers=headers, timeout=10).json()["runtime"] != (
            "compiled"
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"version {version} never ran compiled")
            time.sleep(0.2)


@dataclass
class Run:
    users: int
    seconds: float
    load_average: float = 0.0
    stats: dict[str, dict[str, str]] = field(default_factory=dict)  # Locust's CSV rows by name
    service: list[tuple[float, float]] = field(default_factory=list)
    reloads: dict[str, float] = field(default_factory=dict)
    server_cores: float = 0.0
    throttled: float = 0.0  # share of CFS periods in which the quota ran out
    client_cores: float = 0.0
    client_wall: float = 0.0
    rss_mib: tuple[float, float] = (0.0, 0.0)  # the server's, when measuring starts and ends
    waiting: float = 0.0  # the server's threads' seconds runnable but without a CPU, per second
    exit_code: int = 0

    def figure(self, name: str, column: str) -> float:
        return float(self.stats.get(name, {}).get(column) or "nan")

    @property
    def failures(self) -> int:
        return int(self.figure("Aggregated", "Failure Count")) + (self.exit_code not in (0, 1))

    def ok(self, p99_ms: float) -> bool:
        held = self.figure(SINGLE, "99%") < p99_ms  # a 1,000-record batch alone takes ~60 ms CPU
        return held and self.failures == 0 and self.exit_code == 0


def locust(
    base: str,
    run: Run,
    cgroup: Cgroup,
    client: Cgroup,
    server_pid: int,
    env: dict[str, str],
    args: argparse.Namespace,
) -> None:
    """One headless Locust run at `run.users`, measured from the moment all users are spawned."""
    out = Path(tempfile.mkdtemp(prefix="locust-"))
    ramp = max(2.0, run.users / args.spawn_rate)
    command = [str(Path(sys.executable).parent / "locust"), "-f", str(LOCUSTFILE), "--headless"]
    command += ["--host", base, "-u", str(run.users + 1), "-r", str(args.spawn_rate)]  # +Reloader
    command += ["-t", f"{ramp + run.seconds:.0f}s", "--processes", str(args.processes)]
    command += ["--reset-stats", "--csv", str(out / "run"), "--only-summary"]
    command += ["--exit-code-on-error", "1", "--stop-timeout", "5"]
    log = out / "locust.log"
    run.load_average = os.getloadavg()[0]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*client.prefix(), *command], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    # Locust resets its stats then; the second message when a worker's report came late
    while not re.search(rb"All users spawned|Spawning is complete", log.read_bytes()):
        if process.poll() is not None or time.monotonic() - started > ramp + 120:
            raise RuntimeError(f"Locust never spawned its users: {log.read_text()[-3000:]}")
        time.sleep(0.1)
    before, reloads = scrape(base)
    cpu, periods, measured = group_cpu_seconds(server_pid), cgroup.throttling(), time.monotonic()
    rss, waited = rss_mib(server_pid), runqueue_seconds(server_pid)
    run.exit_code = process.wait(ramp + run.seconds + 300)
    after, reloads_after = scrape(base)
    run.rss_mib = (rss, rss_mib(server_pid))
    elapsed = time.monotonic() - measured
    run.server_cores = (group_cpu_seconds(server_pid) - cpu) / elapsed
    run.waiting = (runqueue_seconds(server_pid) - waited) / elapsed
    periods_after = cgroup.throttling()
    run.throttled = (periods_after[1] - periods[1]) / max(1, periods_after[0] - periods[0])
    run.client_wall = time.monotonic() - started
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = now.ru_utime + now.ru_stime - children.ru_utime - children.ru_stime
    run.client_cores = spent / run.client_wall
    run.service = [(le, after[le] - before.get(le, 0.0)) for le in sorted(after)]
    run.reloads = {k: v - reloads.get(k, 0.0) for k, v in reloads_after.items()}
    rows = pd.read_csv(out / "run_stats.csv", dtype=str, keep_default_na=False)
    run.stats = {row["Name"]: row for row in rows.to_dict(orient="records")}
    if cpu_warning := re.search(r".*CPU usage.*", log.read_text()):
        print(f"Locust: {cpu_warning.group(0)}", file=sys.stderr)
    print(f"{run.users} users: {summary(run)}", file=sys.stderr)


def rss_mib(pid: int) -> float:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024


def runqueue_seconds(pid: int) -> float:
    """Time the server's threads spent ready to run while another task had the CPU (schedstat):
    the neighbours' share of its latency, which its own histogram cannot tell from work."""
    waited = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            waited += int((task / "schedstat").read_text().split()[1])
    return waited / 1e9


def summary(run: Run) -> str:
    return (
        f"{run.figure('Aggregated', 'Requests/s'):.0f} req/s, p99 "
        f"{run.figure('Aggregated', '99%'):g} ms, failures {run.failures}, exit {run.exit_code}, "
        f"server {run.server_cores:.2f} cores (throttled {run.throttled:.0%}, waiting "
        f"{run.waiting:.2f} s/s), "
        f"client {run.client_cores:.2f} cores, load {run.load_average:.2f}"
    )


def flipper(settings: Settings, every: float, stop: threading.Event) -> None:
    """Moves the champion alias between versions 1 and 2, as promotions would."""
    version = 1
    while not stop.wait(every):
        version = 3 - version
        flip_champion(settings, str(version))


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        with contextlib.suppress(ProcessLookupError):  # a server that died is reported
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        process.wait(60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--dataset", type=Path, default=Path(os.environ.get("FORESTOPS_DATASET", DEFAULT_DATASET))
    )
    parser.add_argument("--rows", type=int, default=50_000, help="training rows")
    parser.add_argument("--home", type=Path, help="reuse the champion fitted by an earlier run")
    parser.add_argument("--users", default="50,100,200,300,400,500,600", help="steps")
    parser.add_argument("--step-seconds", type=float, default=30.0)
    parser.add_argument("--hold-seconds", type=float, default=120.0)
    parser.add_argument("--spawn-rate", type=float, default=50.0, help="users started per second")
    parser.add_argument("--processes", type=int, default=4, help="Locust worker processes")
    parser.add_argument("--cpus", type=float, default=1.0)
    parser.add_argument("--memory-mib", type=int, default=512)
    parser.add_argument("--flip-every", type=float, default=60.0, help="s between promotions")
    parser.add_argument("--reload-every", type=float, default=30.0, help="s between /reload")
    parser.add_argument("--p99-ms", type=float, default=50.0)
    args = parser.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="locust-limited-"))
    settings = Settings(forestops_home=home, model_poll_interval_s=0)
    upgrade(settings.database_url)  # the prediction log writes there, as under `forestops up`
    fitted = home / "champion.json"
    if not fitted.exists():
        fitted.write_bytes(orjson.dumps(fit_champion(settings, args.dataset, args.rows)))
        second_version(settings)
    model = orjson.loads(fitted.read_bytes())
    print(f"champion: {model}", file=sys.stderr)

    api_key, admin_key = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "FORESTOPS_HOME": str(home),
        "FORESTOPS_DATASET": str(args.dataset),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MODEL_POLL_INTERVAL_S": "0",
        "INFERENCE_THREADS": str(max(1, round(args.cpus))),
        "API_KEYS": api_key,
        "ADMIN_API_KEY": admin_key,
        "LOCUST_RELOAD_EVERY": str(args.reload_every),
    }
    bin_dir = Path(sys.executable).parent
    compiler: list[subprocess.Popen[bytes]] = []
    try:  # the library cache filled without the limit: gcc beside the server needs more (above)
        serve_ours(bin_dir, env, "auto", compiler)
    finally:
        stop_all(compiler)
    cgroup = Cgroup(CGROUP, args.cpus, args.memory_mib)
    client = Cgroup(f"{CGROUP}-client")
    processes: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    try:
        url, _ = serve_ours(bin_dir, env, "auto", processes, cgroup.prefix())
        base, server = url.removesuffix("/predict"), processes[-1]
        warm_up(base, settings, {"X-API-Key": admin_key})
        threading.Thread(
            target=flipper, args=(settings, args.flip_every, stop), daemon=True
        ).start()
        steps: list[Run] = []
        for users in (int(u) for u in args.users.split(",")):
            steps.append(Run(users, args.step_seconds))
            locust(base, steps[-1], cgroup, client, server.pid, env, args)
            if not steps[-1].ok(args.p99_ms):
                break
        held: list[Run] = []
        good = [s.users for s in steps if s.ok(args.p99_ms)] or [steps[0].users]
        for users in reversed(good):
            held.append(Run(users, args.hold_seconds))
            locust(base, held[-1], cgroup, client, server.pid, env, args)
            if held[-1].ok(args.p99_ms):
                break
    finally:
        stop.set()
        stop_all(processes)
        memory = f"peak {cgroup.peak_mib():.0f} MiB, OOM kills {cgroup.oom_kills()}"
        cgroup.remove()
        client.remove()
    how = f"server: {cgroup.how}; Locust: {client.how}"
    print(report(model, steps, held, how, memory, args))
    return 0 if held[-1].ok(args.p99_ms) else 1


def report(
    model: dict[str, object],
    steps: list[Run],
    held: list[Run],
    how: str,
    memory: str,
    args: argparse.Namespace,
) -> str:
    lines = [
        f"Champion: LightGBM, training pipeline settings, {model['rows']:,} rows "
        f"({model['trees']} trees, holdout accuracy {model['holdout_accuracy']:.3f}), served "
        f"compiled by one `forestops serve` limited to {args.cpus:g} CPU and "
        f"{args.memory_mib} MiB: {how}. Locust {args.processes} worker processes + master; "
        f"each user 1 request/s; champion alias flipped every {args.flip_every:g} s, `/reload` "
        f"every {args.reload_every:g} s.",
        "",
        "| users | s | requests | req/s | failures | single p50 / p99 (ms) | batch p50 / p99 "
        "| all p99 | service p50 / p99 at most | server cores (throttled) | server waiting for a CPU "
        "(s/s) | client cores | load avg |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in [*steps, *held]:
        label = f"**{run.users}** (held)" if any(run is h for h in held) else str(run.users)
        f = run.figure
        lines.append(
            f"| {label} | {run.seconds:g} | {f('Aggregated', 'Request Count'):.0f} "
            f"| {f('Aggregated', 'Requests/s'):.0f} | {run.failures} "
            f"| {f(SINGLE, '50%'):g} / {f(SINGLE, '99%'):g} "
            f"| {f(BATCH, '50%'):g} / {f(BATCH, '99%'):g} | {f('Aggregated', '99%'):g} "
            f"| {bucket_ms(run.service, 50):g} / {bucket_ms(run.service, 99):g} "
            f"| {run.server_cores:.2f} ({run.throttled:.0%}) | {run.waiting:.2f} "
            f"| {run.client_cores:.2f} "
            f"| {run.load_average:.2f} |"
        )
    last = held[-1]
    lines += [
        "",
        f"Held run: `/reload` outcomes {last.reloads}; server RSS {last.rss_mib[0]:.0f} -> "
        f"{last.rss_mib[1]:.0f} MiB; the cgroup over the whole run: {memory}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
