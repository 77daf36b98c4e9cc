"""The serving processes cap glibc's malloc arenas unless MALLOC_ARENA_MAX already does.

The memory effect itself is measured by benchmarks/locust_limited.py (RSS over 2 minutes of load
with a model swap every 10 s, inside a 512 MiB limit); here: the cap is really applied on this glibc machine, and left alone when
the operator set the variable.
"""

from __future__ import annotations

import pytest

from forestops.serving.allocator import cap_malloc_arenas


def test_the_cap_is_applied_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert cap_malloc_arenas() is True


def test_an_operator_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert cap_malloc_arenas() is False
