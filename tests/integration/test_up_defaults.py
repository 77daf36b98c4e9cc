"""Defaults `forestops up` derives from the settings."""

from __future__ import annotations

import pytest

from forestops.config import Settings
from forestops.orchestration.stack import builtin_source_settings


def test_the_built_in_api_moves_on_twice_as_fast_as_ingestion_by_default(
    settings: Settings,
) -> None:
    assert settings.ingest_interval_s == 300
    assert builtin_source_settings(settings).min_update_time_s == 150


def test_an_explicit_batch_window_is_kept(home: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIN_UPDATE_TIME_S", "300")
    monkeypatch.setenv("INGEST_INTERVAL_S", "60")
    assert builtin_source_settings(Settings()).min_update_time_s == 300
