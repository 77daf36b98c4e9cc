"""`forestops up` as a real subprocess for the tests: free ports, a tiny training, its output.

Runs in a session of its own (like a shell job), so the tests can signal it the way a terminal
does and find every process of its tree afterwards (see `process_tree`).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pandas as pd

from forestops.webserver import free_port
from support.process_tree import Proc, TreeRecorder, descendants

FORESTOPS = str(Path(sys.executable).with_name("forestops"))


def write_subset(dataset: Path, target: Path, rows: int) -> Path:
    """The first `rows` rows of the shared data (it is shuffled: every class appears)."""
    pd.read_csv(dataset, nrows=rows).to_csv(target, index=False)
    return target


def tiny_stack_env(dataset: Path, **overrides: str) -> dict[str, str]:
    """Environment for a quick `forestops up`: free ports, fast batches, a seconds-long training.

    Built on the `home` fixture's environment (FORESTOPS_HOME set, developer overrides removed).
    """
    env = {
        **os.environ,
        "FORESTOPS_DATASET": str(dataset),
        "DATA_API_PORT": str(free_port()),
        "INFERENCE_PORT": str(free_port()),
        "MLFLOW_PORT": str(free_port()),
        "UI_PORT": str(free_port()),
        "OPERATIONS_PORT": str(free_port()),
        "MIN_UPDATE_TIME_S": "0",
        "SAMPLE_FRACTION": "1",
        "INGEST_INTERVAL_S": "3",
        "TRAIN_INTERVAL_S": "3600",
        "TRAIN_CANDIDATES": "lightgbm",
        "LIGHTGBM_MAX_ROUNDS": "10",
        "TRAIN_MIN_ROWS": "200",
        "SHUTDOWN_GRACE_S": "5",
        "PYTHONFAULTHANDLER": "1",  # a hang at shutdown shows where every thread was
    }
    env.update(overrides)
    return env


def wait_http_ok(url: str, timeout: float) -> httpx.Response:
    """GET `url` until it answers 200 (a child service may still be starting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(url, timeout=10)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer 200 within {timeout} s"
        time.sleep(0.5)


class UpProcess:
    """`with UpProcess(env, cwd) as up:` ... whatever happens, nothing of its tree survives."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [FORESTOPS, "up"],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.tree = TreeRecorder(self.process.pid).__enter__()
        threading.Thread(target=self._read, daemon=True).start()

    def url(self, port_setting: str) -> str:
        return f"http://127.0.0.1:{self.env[port_setting]}"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            sys.stdout.write(line)  # shown by pytest when a test fails
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float, count: int = 1) -> list[str]:
        """The first `count` output lines matching `pattern` (a regex), waiting up to `timeout`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self.lines if regex.search(line)]
                if len(found) >= count:
                    return found[:count]
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no {count} line(s) matching {pattern!r} in {timeout} s"
                assert self.process.poll() is None, (
                    f"forestops up exited: {self.process.returncode}"
                )
                self._changed.wait(min(remaining, 0.5))

    def wait_for_process(self, text: str, timeout: float) -> Proc:
        """A living process of the tree whose command line contains `text`."""
        deadline = time.monotonic() + timeout
        while True:
            for proc in descendants(self.process.pid):
                if text in proc.cmdline:
                    return proc
            assert time.monotonic() < deadline, f"no process running {text!r} in {timeout} s"
            assert self.process.poll() is None, f"forestops up exited: {self.process.returncode}"
            time.sleep(0.05)

    def interrupt(self, signum: int, timeout: float) -> int:
        """Signal `up` like a terminal does (its foreground group) and wait for it to exit."""
        os.killpg(self.process.pid, signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: dumps every thread
            self.process.wait(10)
            raise

    def __enter__(self) -> UpProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.tree.__exit__()
        for proc in self.tree.survivors():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        self.process.wait(10)
