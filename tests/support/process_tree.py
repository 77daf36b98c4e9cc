"""Process-tree checks on /proc for the `forestops up` tests (Linux only, like the CI runners).

A zombie counts as gone: the process is dead, only its exit status waits for a reaper (PID 1
of a container does not always reap).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str
    started: int  # clock ticks after boot: (pid, started) names a process even if pids are reused
    cmdline: str


def read(pid: int) -> Proc | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        cmdline = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    ppid, pgid, sid, started = int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19])
    return Proc(pid, ppid, pgid, sid, fields[0], started, cmdline.strip())


def alive(pid: int) -> bool:
    proc = read(pid)
    return proc is not None and proc.state not in {"Z", "X"}


def living() -> list[Proc]:
    procs = (read(int(entry.name)) for entry in PROC.iterdir() if entry.name.isdigit())
    return [proc for proc in procs if proc is not None and proc.state not in {"Z", "X"}]


def descendants(root: int) -> list[Proc]:
    procs = living()
    children: dict[int, list[Proc]] = {}
    for proc in procs:
        children.setdefault(proc.ppid, []).append(proc)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


class TreeRecorder:
    """Samples the descendants of `root` in the background, remembering every process, group
    and session it ever saw, so that after shutdown nothing of them may still be alive.

    `root` must lead its own session (start it with start_new_session=True), or the test
    runner's own session would count as part of the tree.
    """

    def __init__(self, root: int, interval_s: float = 0.1) -> None:
        self.root = root
        self.seen: dict[tuple[int, int], Proc] = {}
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> TreeRecorder:
        root = read(self.root)
        assert root is not None, f"process {self.root} is not running"
        assert root.sid == root.pid, "start the root process with start_new_session=True"
        self.seen[(root.pid, root.started)] = root
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            for proc in descendants(self.root):
                self.seen[(proc.pid, proc.started)] = proc  # the latest command line (exec)
            self._stop.wait(self._interval)

    def matching(self, text: str) -> list[Proc]:
        return [proc for proc in self.seen.values() if text in proc.cmdline]

    def survivors(self) -> list[Proc]:
        """Living processes that were in the tree, or share a group/session with one that was."""
        groups = {proc.pgid for proc in self.seen.values()}
        sessions = {proc.sid for proc in self.seen.values()}
        return [
            proc
            for proc in living()
            if (proc.pid, proc.started) in self.seen or proc.pgid in groups or proc.sid in sessions
        ]
