"""Child processes that `forestops up` owns: started in their own process group, stopped as a group.

Why a process group of their own: Ctrl-C in a terminal signals the whole foreground group at
once, which would interrupt an ingestion mid-transaction or kill the MLflow UI before the
scheduler has decided anything. Each child here is a session leader instead, so only the
supervisor signals it, and `stop` can reach its whole subtree (uvicorn workers, streamlit...)
with one `killpg`: SIGTERM first, SIGKILL after a grace period, stragglers swept either way.

Every child runs under `forestops.orchestration.die_with_parent`, which asks Linux to SIGTERM
it when `forestops up` itself dies without cleaning up (SIGKILL, OOM killer).

Output of a child goes through the parent's log: lines already in forestops' format (the jobs
call `configure_logging`) pass through unchanged, anything else (MLflow's uvicorn, LightGBM's
prints) is logged under `forestops.<child name>`, so there is one log format for all parts.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, overload

TERM_TIMEOUT_S = 5.0
"""How long a child may take to exit after SIGTERM before its group gets SIGKILL."""

_OURS = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
_output_lock = threading.Lock()


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exit code {returncode}"


def guarded(argv: Sequence[str]) -> list[str]:
    """`argv` wrapped so that the child dies with this process (see `die_with_parent`)."""
    return [
        sys.executable,
        "-m",
        "forestops.orchestration.die_with_parent",
        str(os.getpid()),
        *argv,
    ]


class Child:
    """One supervised child process (a job tick or a long-running service).

    `env` is laid over this process's environment (the child sees the user's settings too), or
    is the whole environment with `inherit_env=False` (`make fullstack`: a container's view).
    Start children from long-lived threads only: Linux sends the parent-death signal when the
    *thread* that forked the child ends.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        tail_lines: int = 30,
        inherit_env: bool = True,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self._cwd = cwd
        self.argv = list(argv)
        self._env = {**os.environ, **env} if inherit_env else dict(env)
        self._log = logging.getLogger(f"forestops.{name}")
        self.tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._process: subprocess.Popen[str] | None = None
        self._relay: threading.Thread | None = None
        self.started_at = 0.0
        self._terminated = False

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    def start(self) -> Child:
        self._process = subprocess.Popen(
            guarded(self.argv),
            env=self._env,
            cwd=self._cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,
        )
        self.started_at = time.monotonic()
        assert self._process.stdout is not None
        self._relay = threading.Thread(
            target=self._relay_output,
            args=(self._process.stdout,),
            name=f"relay-{self.name}",
            daemon=True,
        )
        self._relay.start()
        return self

    def _relay_output(self, stream: IO[str]) -> None:
        for raw in stream:
            line = raw.rstrip("\n")
            if not line:
                continue
            self.tail.append(line)
            if _OURS.match(line):
                with _output_lock:
                    sys.stderr.write(line + "\n")
                    sys.stderr.flush()
            else:
                self._log.info("%s", line)

    def poll(self) -> int | None:
        assert self._process is not None, "not started"
        return self._process.poll()

    @overload
    def wait(self) -> int: ...
    @overload
    def wait(self, timeout: float) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code, or None if still running after `timeout` seconds."""
        assert self._process is not None, "not started"
        try:
            returncode = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._sweep_group()
        return returncode

    def signal(self, signum: int) -> None:
        """Signal the child's whole process group (no-op once it is gone)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def terminate(self) -> None:
        """SIGTERM the group, once: servers such as uvicorn take a second one as "exit now"."""
        if not self._terminated and self.poll() is None:
            self._terminated = True
            self.signal(signal.SIGTERM)

    def stop(self, timeout: float = TERM_TIMEOUT_S) -> int:
        """SIGTERM the group, SIGKILL it after `timeout` seconds; returns the exit code."""
        self.terminate()
        returncode = self.wait(timeout)
        if returncode is None:
            self._log.warning("did not exit %.0f s after SIGTERM: sending SIGKILL", timeout)
            self.signal(signal.SIGKILL)
            returncode = self.wait()
        return returncode

    def _sweep_group(self) -> None:
        """Kill what the child left in its group, then let the relay drain the pipe.

        A descendant that outlives the leader keeps the output pipe open and would otherwise
        be an orphan of `forestops up`.
        """
        self.signal(signal.SIGKILL)
        for pid in _session_members(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._relay is not None:
            self._relay.join(TERM_TIMEOUT_S)


def _session_members(session: int) -> list[int]:
    """Processes still in the child's session that left its process group.

    Airflow's task supervisor puts each task process in a process group of its own; `killpg`
    misses it, but it stays in the session the child leads (Linux: field 6 of /proc/PID/stat).
    """
    members: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == session:
            members.append(int(stat.parent.name))
    return members
