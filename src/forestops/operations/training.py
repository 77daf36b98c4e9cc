"""Training on an operator's request, in the background: `forestops train --force` as a child.

A training takes minutes and most of a gigabyte, so the request that asks for it only starts it
(202) and the operations API stays responsive; the child is the CLI's own forced training
(`model_ops.train_on_request`: tagged, audited, notified, replicas reloaded), and its memory is
returned when it exits. One at a time: a second request while one runs is refused (409).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from forestops.orchestration.supervisor import Child, describe_exit

State = Literal["running", "done", "failed"]
_CLI = ["-c", "from forestops.cli import app; app()"]


class TrainingBusy(RuntimeError):
    """A requested training is still running."""


@dataclass(frozen=True)
class TrainingJob:
    actor: str
    reason: str | None
    started_at: str
    state: State = "running"
    finished_at: str | None = None
    summary: str = ""
    result: dict[str, Any] = field(default_factory=dict)  # `forestops train --json`'s object

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Trainer:
    """The operations API's one training slot."""

    def __init__(self, python: str, env: Mapping[str, str]) -> None:
        """`env`: laid over this process's environment for the child (`forestops up` passes what
        its own children must agree on)."""
        self._python = python
        self._env = dict(env)
        self._lock = threading.Lock()
        self._job: TrainingJob | None = None
        self._child: Child | None = None

    @property
    def job(self) -> TrainingJob | None:
        """The running or the last finished training (None before the first)."""
        with self._lock:
            return self._job

    def start(self, actor: str, reason: str | None) -> TrainingJob:
        with self._lock:
            if self._job is not None and self._job.state == "running":
                raise TrainingBusy(f"a training asked by {self._job.actor} is still running")
            now = datetime.now(UTC).isoformat(timespec="seconds")
            self._job = TrainingJob(actor, reason, now)
            argv = [self._python, *_CLI, "train", "--force", "--json", "--by", actor]
            argv += ["--reason", reason] if reason else []
            # its own thread: the child is tied to the thread that forks it (supervisor.Child)
            threading.Thread(target=self._run, args=(argv,), name="operator-train").start()
            return self._job

    def _run(self, argv: list[str]) -> None:
        child = Child("operator-train", argv, self._env, tail_lines=200)
        with self._lock:
            self._child = child
        returncode = child.start().wait()
        result = _last_json_object(list(child.tail))
        if returncode == 0 and result:
            update = {"state": "done", "summary": _summary(result), "result": result}
        else:
            last = child.tail[-1] if child.tail else ""
            update = {"state": "failed", "summary": f"{describe_exit(returncode)}: {last}"}
        finished = datetime.now(UTC).isoformat(timespec="seconds")
        with self._lock:
            assert self._job is not None
            self._job = replace(self._job, finished_at=finished, **update)  # type: ignore[arg-type]
            self._child = None

    def stop(self) -> None:
        """The API is shutting down: a running training is stopped (its MLflow run is closed)."""
        with self._lock:
            child = self._child
        if child is not None:
            child.stop()


def _last_json_object(lines: list[str]) -> dict[str, Any]:
    for line in reversed(lines):
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return {}


def _summary(result: dict[str, Any]) -> str:
    action = result.get("action") or {}
    detail = action.get("detail") or result.get("status", "")
    return "; ".join(part for part in (detail, action.get("reload", "")) if part)
