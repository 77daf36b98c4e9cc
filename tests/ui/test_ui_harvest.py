"""The Analytics page shows how much of each batch the harvests collected: from a store filled by
real harvests (the built-in data API on loopback in course fidelity, where each group has a
slice of its own, a tenth of it per call), and from rows written the way harvests write them,
for the cases a harvest meets only by timing."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ui_harness import clean_env, open_page

from forestops.config import Settings
from forestops.pipeline.harvest import harvest_batch
from forestops.source.course_server import create_course_app
from forestops.source.dataset import read_dataset
from forestops.store.database import get_engine, upgrade
from forestops.store.loader import BatchHeader, HarvestFigures, write_batch
from forestops.ui import data
from forestops.webserver import BackgroundServer


def _coverage_bars(app_charts: list) -> dict:
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
    settings = Settings(forestops_home=home, harvest_min_interval_s=0, harvest_time_budget_s=600)
    # two groups, two slices: in the default mode every group shares the batch, so group 2's
    # first sample would be all duplicates (a harvest stops there: `seen_before`, no estimate)
    api = create_course_app(read_dataset(dataset_path, nrows=2000), tmp_path / "s.json", seed=3)
    with BackgroundServer(api) as server:
        source = settings.model_copy(update={"source_api_base_url": server.url})
        harvests = [harvest_batch(source, group) for group in (1, 2)]
    assert [h.stop for h in harvests] == ["dried_up", "dried_up"]
    monkeypatch.setenv("FORESTOPS_HOME", str(home))
    monkeypatch.setenv("DATABASE_URL", settings.database_url)

    for language, title in (
        ("en", "Estimated coverage of each harvested batch"),
        ("es", "Cobertura estimada de cada lote cosechado"),
    ):
        app = open_page("analytics", language)
        chart = _coverage_bars(app.get("plotly_chart"))
        assert chart["layout"]["title"]["text"] == title
    [bars] = chart["data"]
    shares = np.frombuffer(base64.b64decode(bars["y"]["bdata"]), dtype=bars["y"]["dtype"])
    assert [(batch, group) for batch, group, *_ in bars["customdata"]] == [("#1", 1), ("#1", 2)]
    assert shares.tolist() == pytest.approx([h.estimated_coverage for h in harvests])


def test_each_harvested_batch_shows_the_last_figures_of_its_last_harvest(tmp_path: Path) -> None:
    """Group 1: batch 1 over two runs (the second, stopped early, starts its tally again), then
    the single sample a run took as the source moved on (no estimate: not shown); group 2's
    harvest of its batch 1 interleaved with them."""
    url = f"sqlite:///{tmp_path / 'forestops.db'}"
    upgrade(url)
    written = [
        (1, 1, 1, None),
        (2, 1, 1, None),
        (1, 1, 2, 0.19),
        (2, 1, 2, 0.2),
        (2, 1, 3, 0.3),
        (1, 1, 1, None),
        (1, 1, 2, 0.21),
        (1, 2, 1, None),
    ]
    with get_engine(url).begin() as connection:
        for group, batch, calls, coverage in written:
            header = BatchHeader("tests", group, batch, datetime.now(UTC), None, None)
            size = None if coverage is None else 1000
            figures = HarvestFigures(calls, calls * 100, size, coverage)
            write_batch(connection, header, pd.DataFrame(), [], figures)

    shown = data.harvest_coverage(url)
    assert shown[["group_number", "batch_number", "harvest_calls"]].values.tolist() == [
        [2, 1, 3],
        [1, 1, 2],
    ]
    assert shown["estimated_coverage"].tolist() == [0.3, 0.21]


def test_home_counts_source_batches_not_ingestion_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A harvest stores one ingestion record per call: ten calls of group 1's batch 1, three of
    its batch 2 and a replay of batch 1 are two source batches, not fourteen."""
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'forestops.db'}"
    upgrade(url)
    with get_engine(url).begin() as connection:
        for batch, calls in ((1, 10), (2, 3), (1, 1)):
            for call in range(1, calls + 1):
                header = BatchHeader("tests", 1, batch, datetime.now(UTC), None, None)
                write_batch(
                    connection, header, pd.DataFrame(), [], HarvestFigures(call, 0, None, None)
                )
    monkeypatch.setenv("FORESTOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATABASE_URL", url)

    app = open_page("home")

    [batches] = [metric for metric in app.metric if metric.label == "Batches"]
    assert batches.value == "2"
    assert batches.help == "Distinct batches of the data source, collected in 14 fetches"
    status = open_page("status")
    assert any("0 rows in 2 batches" in s.value for s in status.success), status.success
