"""The Analytics page shows how much of each batch the harvests collected, from a store filled
by real harvests (the built-in data API on loopback, its defaults: a tenth per call)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from ui_harness import clean_env, open_page

from forestops.config import Settings
from forestops.pipeline.harvest import harvest_batch
from forestops.source.dataset import read_dataset
from forestops.source.server import create_app
from forestops.webserver import BackgroundServer


def _coverage_chart(app_charts: list) -> dict:
    for element in app_charts:
        if element.proto.id.endswith("harvest_coverage"):
            return json.loads(element.proto.spec)
    raise AssertionError("no harvest coverage chart on the page")


def test_analytics_shows_the_estimated_coverage_of_each_harvest(
    dataset_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    settings = Settings(
        forestops_home=home,
        source_api_base_url="",
        harvest_min_interval_s=0,
        harvest_time_budget_s=60,
    )
    frame = read_dataset(dataset_path, nrows=2000)
    api = create_app(frame, tmp_path / "state.json", min_update_time=0.5, seed=3)
    with BackgroundServer(api) as server:
        source = settings.model_copy(update={"source_api_base_url": server.url})
        first, second = harvest_batch(source), harvest_batch(source)
    assert (first.stop, second.batch_number) == ("batch_changed", 2)
    monkeypatch.setenv("FORESTOPS_HOME", str(home))
    monkeypatch.setenv("DATABASE_URL", settings.database_url)

    for language, title in (
        ("en", "Estimated coverage of each harvested batch"),
        ("es", "Cobertura estimada de cada lote cosechado"),
    ):
        app = open_page("analytics", language)
        chart = _coverage_chart(app.get("plotly_chart"))
        assert chart["layout"]["title"]["text"] == title
    # batch 2 was harvested by the second run, after the first had stored one sample of it;
    # batch 3's single sample has no estimate yet
    [bars] = chart["data"]
    shares = np.frombuffer(base64.b64decode(bars["y"]["bdata"]), dtype=bars["y"]["dtype"])
    shown = {batch[0]: share for batch, share in zip(bars["customdata"], shares, strict=True)}
    assert shown == {
        "#1": pytest.approx(first.estimated_coverage),
        "#2": pytest.approx(second.estimated_coverage),
    }
