"""The alerting configuration, checked by the tools that will run it.

- `promtool test rules` runs deploy/prometheus/alerts.test.yml (every rule fires in one case and
  stays silent in another) and `promtool check config` loads prometheus.yml with its rule file;
- every forestops metric a rule or the pipeline dashboard queries is one a running inference
  service exports, and every Airflow metric one the statsd-exporter mapping produces from a name
  Airflow emits;
- a real Alertmanager (Debian's binary, our alertmanager.yml) delivers a posted alert to a
  Slack-compatible webhook; `amtool check-config` accepts the file as shipped.

The tools come from Debian's `prometheus` and `prometheus-alertmanager` packages (`make test`
installs them).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from forestops.config import Settings
from forestops.serving.app import create_app
from forestops.store.database import get_engine, upgrade
from forestops.store.loader import BatchHeader, HarvestFigures, write_batch
from forestops.webserver import BackgroundServer, free_port
from support.webhook import Receiver

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy/prometheus"
ALERTMANAGER_CONFIG = ROOT / "deploy/alertmanager/alertmanager.yml"
STATSD_MAPPINGS = ROOT / "deploy/statsd-exporter/mappings.yml"
PIPELINE_DASHBOARD = ROOT / "deploy/grafana/dashboards/forestops-pipeline.json"
PROMTOOL = "/usr/bin/promtool"
AMTOOL = "/usr/bin/amtool"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"


def run(*command: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_rules_pass_their_unit_tests_and_prometheus_loads_them() -> None:
    assert "SUCCESS" in run(PROMTOOL, "test", "rules", "alerts.test.yml", cwd=PROMETHEUS)
    checked = run(PROMTOOL, "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert f"SUCCESS: {len(rules())} rules found" in checked


def test_every_rule_is_tested_firing_and_silent() -> None:
    cases: dict[str, set[str]] = {}
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    for case in tests:
        for check in case["alert_rule_test"]:
            outcome = "fires" if check["exp_alerts"] else "silent"
            cases.setdefault(check["alertname"], set()).add(outcome)
    names = [rule["alert"] for rule in rules()]
    assert {"InferenceDown", "NoChampionServed", "InferenceErrorRate", "PredictLatencyP99High",
            "PredictionLogBacklog", "FeatureDrift", "StaleData", "TrainingFailed"} <= set(names)  # fmt: skip
    assert {name: cases.get(name) for name in names} == {
        name: {"fires", "silent"} for name in names
    }


def dashboard_queries() -> list[str]:
    dashboard = json.loads(PIPELINE_DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def _series(names: set[str]) -> set[str]:
    """Every series name a family gives (a counter `x` is `x_total`; histograms add suffixes)."""
    suffixes = ("", "_total", "_bucket", "_sum", "_count")
    return {f"{name}{suffix}" for name in names for suffix in suffixes}


def test_every_forestops_metric_the_rules_and_the_pipeline_dashboard_query_is_exported(
    settings: Settings,
) -> None:
    upgrade(settings.database_url)
    fetched = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    with get_engine(settings.database_url).begin() as connection:  # as a harvest's 7th call writes
        header = BatchHeader("tests", 3, 2, fetched, None, None)
        write_batch(connection, header, pd.DataFrame(), [], HarvestFigures(7, 900, 1000, 0.9))
    with BackgroundServer(create_app(settings)) as server:
        exposition = httpx.get(f"{server.url}/metrics").text
    assert 'forestops_harvest_estimated_coverage{batch="2",group="3"} 0.9' in exposition
    stamp = re.search(r"^forestops_ingestion_last_batch_timestamp_seconds (\S+)$", exposition, re.M)
    assert stamp and float(stamp.group(1)) == fetched.timestamp()
    declared = {line.split()[2] for line in exposition.splitlines() if line.startswith("# TYPE ")}
    exported = _series(declared)
    for exprs in ([rule["expr"] for rule in rules()], dashboard_queries()):
        queried = {name for expr in exprs for name in re.findall(r"forestops_\w+", expr)}
        assert len(queried) >= 4 and queried <= exported, queried - exported


def test_the_pipeline_dashboard_shows_what_the_issue_asks_for() -> None:
    queries = " ".join(dashboard_queries())
    for metric in (
        "airflow_dagrun_duration_seconds",  # DAG run durations
        'airflow_ti_finish{state="failed"}',  # failures
        "forestops_ingestion_last_batch_rows",  # rows per batch
        "forestops_harvest_estimated_coverage",  # harvest coverage
        "forestops_model_accuracy",  # training accuracy by version
    ):
        assert metric in queries, metric
    mappings = yaml.safe_load(STATSD_MAPPINGS.read_text())["mappings"]
    airflow = set(re.findall(r"airflow_\w+", queries))
    assert airflow <= _series({mapping["name"] for mapping in mappings})


def test_every_airflow_metric_a_rule_queries_comes_from_a_mapping_of_an_airflow_name() -> None:
    mappings = yaml.safe_load(STATSD_MAPPINGS.read_text())["mappings"]
    # Names as Airflow 3 emits them (legacy StatsD names: its metrics_template.yaml), prefixed.
    emitted = {
        "airflow.ti.finish.forest_training_pipeline.train_forest_models.failed": {
            "dag_id": "forest_training_pipeline",
            "task_id": "train_forest_models",
            "state": "failed",
        },
        "airflow.dagrun.duration.failed.forest_training_pipeline": {
            "dag_id": "forest_training_pipeline",
            "state": "failed",
        },
        "airflow.dag.forest_cover_data_pipeline.fetch_data.duration": {
            "dag_id": "forest_cover_data_pipeline",
            "task_id": "fetch_data",
        },
    }
    produced = {}
    for statsd_name, labels in emitted.items():
        name, mapped = _map(mappings, statsd_name)
        assert mapped == labels, statsd_name
        produced[name] = set(labels)
    for rule in rules():
        for name in re.findall(r"airflow_\w+", rule["expr"]):
            assert name in produced, name
            used = set(re.findall(r"(\w+)=~?\"", rule["expr"]))
            assert used <= produced[name], (name, used)


def _map(mappings: list[dict[str, Any]], statsd_name: str) -> tuple[str, dict[str, str]]:
    """statsd-exporter's glob matching: `*` is one dot-free segment, `$n` the n-th of them."""
    for mapping in mappings:
        pattern = "^" + re.escape(mapping["match"]).replace(r"\*", r"([^.]+)") + "$"
        found = re.match(pattern, statsd_name)
        if found:
            labels = {
                key: found.expand(value.replace("$", "\\"))  # "$1" -> group 1
                for key, value in mapping.get("labels", {}).items()
            }
            return mapping["name"], labels
    raise AssertionError(f"no mapping matches {statsd_name}")


def test_amtool_accepts_the_alertmanager_config() -> None:
    assert "SUCCESS" in run(AMTOOL, "check-config", str(ALERTMANAGER_CONFIG))


@pytest.fixture
def webhook() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()
    with BackgroundServer(receiver.app) as server:
        yield receiver, f"{server.url}/hook"


def test_alertmanager_delivers_a_firing_alert_to_the_webhook(
    tmp_path: Path, webhook: tuple[Receiver, str]
) -> None:
    receiver, url = webhook
    (tmp_path / "notify_webhook_url").write_text(url)
    config = ALERTMANAGER_CONFIG.read_text()
    key_file = "api_url_file: /run/secrets/notify_webhook_url"
    assert config.count(key_file) == 1
    assert config.count("group_wait: 30s") == 1
    config = config.replace(key_file, f"api_url_file: {tmp_path / 'notify_webhook_url'}")
    config = config.replace("group_wait: 30s", "group_wait: 1s")  # the only change: no 30 s wait
    (tmp_path / "alertmanager.yml").write_text(config)
    port = free_port()
    command = [
        ALERTMANAGER,
        f"--config.file={tmp_path / 'alertmanager.yml'}",
        f"--storage.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # a single instance: no gossip port
    ]
    log = (tmp_path / "alertmanager.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        api = f"http://127.0.0.1:{port}/api/v2"
        _wait(lambda: _answers(f"{api}/status"), "Alertmanager answering")
        alert = {
            "labels": {"alertname": "NoChampionServed", "severity": "critical",
                       "instance": "10.0.0.2:8000", "job": "inference"},
            "annotations": {"summary": "Inference replica 10.0.0.2:8000 serves no model",
                            "description": "The replica has had no model loaded for 5 minutes."},
        }  # fmt: skip
        assert httpx.post(f"{api}/alerts", json=[alert], timeout=10).status_code == 200

        _wait(lambda: bool(receiver.posts), "the webhook receiving the alert")
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()
    [post] = receiver.posts
    [attachment] = post["attachments"]  # Slack's incoming-webhook format
    assert attachment["title"] == "[critical] NoChampionServed (firing)"
    assert attachment["text"].startswith(
        "forestops: Inference replica 10.0.0.2:8000 serves no model"
    )


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _wait(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
