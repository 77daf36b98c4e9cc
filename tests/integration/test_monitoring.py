"""Monitoring end to end: real inference service over HTTP, real PostgreSQL store, real webhook.

The champion is a tiny LightGBM trained on the first 3,000 rows of the shared data set; those
rows are seeded as store batch 1 and the champion's run is tagged with max batch id 1, exactly
what a training job leaves. Traffic is real rows sent to the running service, so the monitor
reads what the prediction log really wrote.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from forestops import cli, contract
from forestops.config import Settings
from forestops.modeling.tracking import TAG_MAX_BATCH_ID
from forestops.pipeline.monitor import monitor
from forestops.serving.app import create_app
from forestops.store.database import get_engine, upgrade
from forestops.store.monitoring import latest_batch, recent_reports
from forestops.store.schema import prediction_log
from forestops.webserver import BackgroundServer, free_port
from support.champion import log_candidate, tiny_pipeline
from support.served_traffic import serve_frame
from support.training_data import course_rows, seed_samples
from support.webhook import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TRAIN_ROWS = 3000
DASHBOARD = Path(__file__).parents[2] / "deploy/grafana/dashboards/forestops-inference.json"
ELEVATION_MAX = contract.NUMERIC_BY_NAME["elevation"].maximum


@dataclass(frozen=True)
class Champion:
    settings: Settings  # MLflow store and model name; no database yet
    accuracy: float


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory, dataset_path: Path) -> Champion:
    root = tmp_path_factory.mktemp("monitor-store")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        forestops_home=root,
        mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        model_name="forest-cover-monitoring",
        model_poll_interval_s=0,
        monitor_min_rows=200,
    )
    frame = course_rows(dataset_path, TRAIN_ROWS)
    pipeline = tiny_pipeline(frame)
    held_out = course_rows(dataset_path, 1000, skip=TRAIN_ROWS)
    accuracy = float(
        np.mean(
            pipeline.predict(held_out[list(contract.FEATURE_NAMES)]) == held_out[contract.LABEL]
        )
    )
    run_id, _ = log_candidate(settings, pipeline, accuracy)
    MlflowClient(settings.mlflow_tracking_uri).set_tag(run_id, TAG_MAX_BATCH_ID, "1")
    return Champion(settings, accuracy)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    hook = Receiver()
    with BackgroundServer(hook.app) as server:
        yield hook, f"{server.url}/hook"


@pytest.fixture
def settings(champion: Champion, pg_url: str, receiver: tuple[Receiver, str]) -> Settings:
    upgrade(pg_url)
    return champion.settings.model_copy(
        update={"database_url": pg_url, "notify_webhook_url": receiver[1]}
    )


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame[list(contract.FEATURE_NAMES)].to_dict(orient="records")


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_shifted_elevation_is_flagged_alone_stored_gauged_and_notified(
    settings: Settings, dataset_path: Path, receiver: tuple[Receiver, str]
) -> None:
    seed_samples(settings, course_rows(dataset_path, TRAIN_ROWS))
    served = course_rows(dataset_path, 1000, skip=TRAIN_ROWS)
    served["elevation"] = np.minimum(served["elevation"] + 500, ELEVATION_MAX)
    serve_frame(settings, served)

    report = monitor(settings)

    assert report.alert
    assert report.drifted("served", settings.monitor_psi_threshold) == ["elevation"]
    assert set(report.feature_drift["served"]) == set(contract.FEATURE_NAMES)
    assert "ingested" not in report.feature_drift  # nothing ingested since training
    stored = recent_reports(get_engine(settings.database_url))
    assert [r["id"] for r in stored] == [report.report_id]
    assert stored[0]["alert"] and stored[0]["feature_drift"] == report.feature_drift
    hook, _ = receiver
    assert len(hook.posts) == 1 and "elevation drifted" in hook.posts[0]["text"]
    # the next scrape of the inference service shows the report as gauges
    metrics = serve_frame(settings, served.iloc[:1])
    assert _metric(metrics, "forestops_monitor_alert") == 1.0
    elevation = 'forestops_feature_drift_psi{feature="elevation",source="served"}'
    assert _metric(metrics, re.escape(elevation)) > settings.monitor_psi_threshold
    inserted = 'forestops_ingestion_last_batch_rows{kind="inserted"}'
    assert _metric(metrics, re.escape(inserted)) == TRAIN_ROWS
    batch = latest_batch(get_engine(settings.database_url))
    assert batch is not None
    fetched = batch["fetched_at"].replace(tzinfo=batch["fetched_at"].tzinfo or UTC).timestamp()
    assert _metric(metrics, "forestops_ingestion_last_batch_timestamp_seconds") == fetched


def test_every_metric_the_dashboard_queries_is_exported(settings: Settings) -> None:
    """Monitoring families are declared before the first report, so a fresh stack's dashboard
    panels say "no data" rather than naming metrics that do not exist."""
    with BackgroundServer(create_app(settings)) as server:
        exposition = httpx.get(f"{server.url}/metrics").text
    exported = {
        re.sub(r"_(total|created)$", "", line.split()[2])
        for line in exposition.splitlines()
        if line.startswith("# TYPE ")
    }
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {
        re.sub(r"_(total|bucket|sum|count)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"forestops_\w+", target["expr"])
    }
    monitoring = {"forestops_feature_drift_psi", "forestops_live_accuracy"}
    assert monitoring <= queried and queried <= exported, queried - exported


def test_unshifted_traffic_and_new_batches_raise_no_alert(
    champion: Champion, settings: Settings, dataset_path: Path, receiver: tuple[Receiver, str]
) -> None:
    seed_samples(settings, course_rows(dataset_path, TRAIN_ROWS))
    seed_samples(settings, course_rows(dataset_path, 1000, skip=TRAIN_ROWS))  # batch 2: new
    serve_frame(settings, course_rows(dataset_path, 1000, skip=TRAIN_ROWS + 1000))

    report = monitor(settings)

    assert not report.alert, report.reasons
    assert report.rows == {"reference": TRAIN_ROWS, "served": 1000, "ingested": 1000}
    assert set(report.feature_drift) == {"served", "ingested"}
    assert report.prediction_shift is not None
    assert report.live_accuracy == pytest.approx(champion.accuracy)  # the same 1,000 rows
    assert receiver[0].posts == []
    assert not recent_reports(get_engine(settings.database_url))[0]["alert"]


def test_wrong_labels_in_new_batches_are_an_accuracy_alert_from_the_cli(
    settings: Settings,
    dataset_path: Path,
    receiver: tuple[Receiver, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_samples(settings, course_rows(dataset_path, TRAIN_ROWS))
    relabelled = course_rows(dataset_path, 1000, skip=TRAIN_ROWS)
    relabelled[contract.LABEL] = (relabelled[contract.LABEL] + 1) % len(contract.CLASS_IDS)
    seed_samples(settings, relabelled)
    for name in ("forestops_home", "database_url", "mlflow_tracking_uri", "model_name"):
        monkeypatch.setenv(name.upper(), str(getattr(settings, name)))
    monkeypatch.setenv("NOTIFY_WEBHOOK_URL", settings.notify_webhook_url)

    result = CliRunner().invoke(cli.app, ["monitor", "--json"])

    assert result.exit_code == 3, result.output  # an alert
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["alert"] and report["live_accuracy"] < 0.5
    assert all(
        psi < settings.monitor_psi_threshold for psi in report["feature_drift"]["ingested"].values()
    )
    assert any("live accuracy" in reason for reason in report["reasons"])
    assert len(receiver[0].posts) == 1


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])  # COPY / executemany
def test_every_record_of_concurrent_requests_lands_in_the_log(
    settings: Settings, dataset_path: Path, database: str, tmp_path: Path
) -> None:
    if database == "sqlite":
        settings = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'f.db'}"})
        upgrade(settings.database_url)
    records = _records(course_rows(dataset_path, 400, skip=TRAIN_ROWS))
    threads, requests, per_request = 8, 25, 10
    app = create_app(settings)
    with BackgroundServer(app) as server:

        def client_thread(index: int) -> None:
            with httpx.Client(base_url=server.url) as client:
                for number in range(requests):
                    start = (index * requests + number) * per_request % len(records)
                    response = client.post(
                        "/predict",
                        json=records[start : start + per_request],
                        headers={"X-Request-ID": f"t{index}-{number}"},
                    )
                    assert response.status_code == 200

        workers = [threading.Thread(target=client_thread, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert app.state.prediction_logger.flush(30)
    with get_engine(settings.database_url).connect() as conn:
        count = conn.execute(select(func.count()).select_from(prediction_log)).scalar()
        first = conn.execute(
            select(prediction_log)
            .where(prediction_log.c.request_id == "t0-0")
            .order_by(prediction_log.c.id)
        ).mappings()
        rows = list(first)
    assert count == threads * requests * per_request
    assert len(rows) == per_request
    sent = records[0]
    logged = rows[0]["features"]
    assert {k: logged[k] for k in contract.NUMERIC_NAMES} == {
        k: sent[k] for k in contract.NUMERIC_NAMES
    }
    assert logged["soil_type"] == contract.canonical_category("soil_type", sent["soil_type"])
    assert rows[0]["model_version"] == "1" and 0 < rows[0]["probability"] <= 1
    logged_at = rows[0]["logged_at"]  # SQLite keeps no zone: the writer stores UTC there
    logged_at = logged_at if logged_at.tzinfo else logged_at.replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - logged_at) < timedelta(minutes=10)


def test_a_dead_database_never_fails_a_prediction_and_counts_backlog_and_drops(
    settings: Settings, dataset_path: Path
) -> None:
    dead = settings.model_copy(
        update={
            "database_url": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none",
            "prediction_log_capacity": 60,
        }
    )
    records = _records(course_rows(dataset_path, 100, skip=TRAIN_ROWS))
    app = create_app(dead)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url) as client:
        for start in range(0, 100, 10):
            response = client.post("/predict", json=records[start : start + 10])
            assert response.status_code == 200
        logger = app.state.prediction_logger
        assert not logger.flush(2)  # nothing can be written
        metrics = client.get("/metrics").text
    assert _metric(metrics, "forestops_prediction_log_backlog") == 60
    assert _metric(metrics, "forestops_prediction_log_dropped_total") == 40
    assert _metric(metrics, "forestops_prediction_log_written_total") == 0
    assert _metric(metrics, "forestops_prediction_log_write_errors_total") >= 1
    dropped = logger.dropped.collect()[0].samples[0].value
    assert dropped == 100  # at shutdown the backlog is dropped, and counted


def test_answers_of_an_earlier_version_are_not_the_champions_class_shift(
    settings: Settings, dataset_path: Path
) -> None:
    """A promotion inside the window: what version 0 answered (all one class here) is no shift
    of the champion's predictions, but its inputs still count for input drift."""
    seed_samples(settings, course_rows(dataset_path, TRAIN_ROWS))
    served = course_rows(dataset_path, 1000, skip=TRAIN_ROWS)
    serve_frame(settings, served)
    earlier = [
        {
            "logged_at": datetime.now(UTC),
            "request_id": f"earlier-{i}",
            "model_version": "0",
            "features": record,
            "prediction": 6,
            "probability": 1.0,
            "latency_ms": 1.0,
        }
        for i, record in enumerate(_records(served))
    ]
    with get_engine(settings.database_url).begin() as conn:
        conn.execute(prediction_log.insert(), earlier)

    report = monitor(settings)

    assert report.rows["served"] == 2000  # inputs of both versions
    assert report.prediction_shift is not None
    assert report.prediction_shift < settings.monitor_psi_threshold, report.reasons
