"""Long-running children of `forestops up` (the MLflow UI, the web UI): restarted when they die.

A service that dies is logged with its exit status and last line of output, then restarted after
a delay that doubles on each quick failure (2 s up to 5 min) and resets once it ran a minute: a
port taken by another program shows up in the log every few minutes instead of flooding it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from forestops.orchestration.supervisor import TERM_TIMEOUT_S, Child, describe_exit

log = logging.getLogger("forestops.services")

MIN_BACKOFF_S = 2.0
MAX_BACKOFF_S = 300.0
STABLE_AFTER_S = 60.0


class Service:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._argv = list(argv)
        self._env = dict(env)
        self._clock = clock  # seconds; tests drive the delays instead of sleeping through them
        self._child: Child | None = None
        self._started_at = 0.0
        self._lock = threading.Lock()
        self._stopping = False
        self._backoff = MIN_BACKOFF_S
        self._restart_at: float | None = None

    def start(self) -> None:
        with self._lock:
            if not self._stopping:
                self._spawn()

    def watch(self) -> None:
        """Called periodically by the scheduler: notice a death, restart when its delay is over."""
        with self._lock:
            if self._stopping or self._child is None:
                return
            returncode = self._child.wait(0)
            if returncode is None:
                return
            now = self._clock()
            if self._restart_at is None:
                if now - self._started_at >= STABLE_AFTER_S:
                    self._backoff = MIN_BACKOFF_S
                self._restart_at = now + self._backoff
                last = f": {self._child.tail[-1]}" if self._child.tail else ""
                log.error(
                    "%s stopped (%s)%s; restarting in %.0f s",
                    self.name,
                    describe_exit(returncode),
                    last,
                    self._backoff,
                )
                self._backoff = min(self._backoff * 2, MAX_BACKOFF_S)
                return
            if now < self._restart_at:
                return
            self._restart_at = None
            log.info("restarting %s", self.name)
            self._spawn()

    def _spawn(self) -> None:
        self._child = Child(self.name, self._argv, self._env).start()
        self._started_at = self._clock()

    def terminate(self) -> None:
        """SIGTERM now, without waiting: services stop while the jobs finish."""
        with self._lock:
            self._stopping = True
            if self._child is not None:
                self._child.terminate()

    def stop(self, timeout: float = TERM_TIMEOUT_S) -> None:
        with self._lock:
            self._stopping = True
            if self._child is not None:
                self._child.stop(timeout)
