"""Defaults `forestops up` derives from the settings."""

from __future__ import annotations

import pytest

from forestops.config import Settings
from forestops.orchestration.stack import builtin_source_settings

pytestmark = pytest.mark.slow


def test_the_built_in_api_moves_on_twice_as_fast_as_ingestion_by_default(
    settings: Settings,
) -> None:
    assert settings.ingest_interval_s == 300
    builtin = builtin_source_settings(settings)
    assert builtin.min_update_time_s == 150
    assert builtin.harvest_min_interval_s == 0  # no politeness toward our own API


def test_explicit_source_settings_are_kept(home: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIN_UPDATE_TIME_S", "300")
    monkeypatch.setenv("HARVEST_MIN_INTERVAL_S", "1.5")
    monkeypatch.setenv("INGEST_INTERVAL_S", "60")
    builtin = builtin_source_settings(Settings())
    assert builtin.min_update_time_s == 300
    assert builtin.harvest_min_interval_s == 1.5
