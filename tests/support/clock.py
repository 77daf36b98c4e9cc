"""A clock the test moves: code that measures time takes a `clock` callable, so a test of a
window or a delay drives it instead of sleeping through it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ManualClock:
    """Seconds (unix-like by default) that change only when `advance` is called."""

    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
