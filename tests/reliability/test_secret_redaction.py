"""No secret of a URI in any answer or log line (issue 20 item 3), against a real `forestops
serve` whose tracking URI carries a credential, the real app's /metadata, and the UI's calls.

MLflow quotes the URI it called in its errors ("API request to http://USERINFO@host/...
failed", password included), so before the fix the open /health answered the password and the
log printed it. Secrets here are built at run time, so the repository's own credential scan
(test_security.py) stays clean.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient

from forestops.config import Settings
from forestops.redact import install_log_redaction, redact_text, redact_uri
from forestops.serving.app import create_app
from forestops.serving.holder import ModelHolder
from forestops.ui import inference, registry
from forestops.ui.errors import MlflowUnreachable
from forestops.ui.section_guard import summary
from forestops.webserver import BackgroundServer, free_port
from support.champion import SIGNING_KEY, ChampionStore, champion_store
from support.serve_process import ServeProcess

SECRET = "pw-" + secrets.token_hex(8)
TOKEN = "tok-" + secrets.token_hex(8)


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        (f"http://forestops:{SECRET}@mlflow:5000", "http://***@mlflow:5000"),
        (f"https://{TOKEN}@mlflow.example.org/x", "https://***@mlflow.example.org/x"),
        (f"postgresql+psycopg://app:{SECRET}@db:5432/app", "postgresql+psycopg://***@db:5432/app"),
        (f"mysql://u:a/b{SECRET}@db/x", "mysql://***@db/x"),  # a '/' in the password
        (f"https://h/p?token={TOKEN}&page=2", "https://h/p?token=***&page=2"),
        (
            f"s3://b/k?X-Amz-Credential={TOKEN}&X-Amz-Signature={SECRET}&X-Amz-Date=1",
            "s3://b/k?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Date=1",
        ),
        (f"http://h:8000/?api_key={TOKEN}#top", "http://h:8000/?api_key=***#top"),
        ("models:/forest-cover@champion", "models:/forest-cover@champion"),
        ("sqlite:////srv/forestops/mlflow.db", "sqlite:////srv/forestops/mlflow.db"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ],
)
def test_redact_uri(uri: str, shown: str) -> None:
    assert redact_uri(uri) == shown
    assert redact_text(f"API request to {uri} failed (retried)") == (
        f"API request to {shown} failed (retried)"
    )


def test_every_log_record_is_redacted_message_and_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_log_redaction()
    log = logging.getLogger("forestops.test_secret_redaction")
    uri = f"http://{TOKEN}@127.0.0.1:1/api"
    with caplog.at_level(logging.INFO):
        try:
            raise ConnectionError(f"API request to {uri} failed")
        except ConnectionError:
            log.exception("refresh failed: %s", uri)
    assert "refresh failed: http://***@127.0.0.1:1/api" in caplog.text
    assert "ConnectionError: API request to http://***@127.0.0.1:1/api failed" in caplog.text
    assert TOKEN not in caplog.text


def closed_port_uri(userinfo: str) -> str:
    return f"http://{userinfo}@127.0.0.1:{free_port()}"


@pytest.fixture(
    scope="module",
    params=[f"forestops:{SECRET}", TOKEN],
    ids=["user-and-password", "token-only"],
)
def unreachable(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    env = {
        "FORESTOPS_HOME": str(tmp_path_factory.mktemp("redaction-home")),
        "MLFLOW_TRACKING_URI": closed_port_uri(request.param),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
        "MODEL_POLL_INTERVAL_S": "0",
        "MODEL_SIGNING_KEY": SIGNING_KEY,  # required with a tracking server
        "PREDICTION_LOG_ENABLED": "false",
    }
    workdir = tmp_path_factory.mktemp("redaction-serve")
    with ServeProcess(env, workdir, ready_status=503) as process:
        yield process


def test_a_credential_in_the_tracking_uri_is_in_no_answer_and_no_log_line(
    unreachable: ServeProcess,
) -> None:
    with httpx.Client(base_url=unreachable.url, timeout=60) as client:
        health = client.get("/health")
        answers = [
            health,
            client.get("/metadata"),
            client.post("/predict", json={}),
            client.post("/reload"),  # no keys configured: open, and it quotes the error
            client.get("/metrics"),
        ]
    assert health.status_code == 503
    assert health.json()["detail"] == "tracking server unreachable (the service log says why)"
    assert answers[3].status_code == 502 and "***@127.0.0.1" in answers[3].json()["detail"]
    for answer in answers:
        assert SECRET not in answer.text and TOKEN not in answer.text, answer.request.url
    log = unreachable.log()
    assert "tracking server unreachable" in log and "***@127.0.0.1" in log  # it was logged
    assert SECRET not in log and TOKEN not in log


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, dataset_path: Path) -> ChampionStore:
    return champion_store(tmp_path_factory.getbasetemp() / "secret-redaction-store", dataset_path)


def test_metadata_shows_no_host_path(store: ChampionStore) -> None:
    tags = MlflowClient(store.settings.mlflow_tracking_uri).get_run(store.run_a).data.tags
    source = tags["mlflow.source.name"]  # the training host's script path (here pytest's)
    holder = ModelHolder(store.settings)
    holder.start()
    try:
        with TestClient(create_app(store.settings, holder)) as client:
            lineage = client.get("/metadata").json()["lineage"]
    finally:
        holder.stop()
    assert "mlflow.source.name" not in lineage
    assert lineage["forestops.kind"] == "candidate"  # the rest of the lineage stays
    assert not [value for value in lineage.values() if source in value or value.startswith("/")]


def test_the_ui_shows_no_secret_of_the_addresses_it_calls(home: Path) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        inference_api_url=closed_port_uri(TOKEN) + f"/?token={SECRET}",
        mlflow_tracking_uri=closed_port_uri(f"forestops:{SECRET}"),
    )
    state = inference.health(settings)
    assert not state.reachable and "***@127.0.0.1" in (state.detail or "")
    with pytest.raises(MlflowUnreachable) as caught:
        registry.client(settings)
    said = [state.detail or "", str(caught.value), summary(caught.value)]
    for text in said:
        assert SECRET not in text and TOKEN not in text, text


def test_the_ui_forwards_any_filename(store: ChampionStore) -> None:
    """The UI passes the user's own file name on: `数据.csv` used to come back as a 500."""
    holder = ModelHolder(store.settings)
    holder.start()
    upload = (
        b"elevation,aspect,slope,horizontal_distance_to_hydrology,vertical_distance_to_hydrology,"
        b"horizontal_distance_to_roadways,hillshade_9am,hillshade_noon,hillshade_3pm,"
        b"horizontal_distance_to_fire_points,wilderness_area,soil_type\n"
        b"2596,51,3,258,0,510,221,232,148,6279,Rawah,C7745\n"
    )
    try:
        with BackgroundServer(create_app(store.settings, holder)) as server:
            settings = store.settings.model_copy(update={"inference_api_url": server.url})
            for name in ("数据.csv", 'a "quoted" name.csv'):
                answer = inference.predict_csv(settings, upload, name).decode()
                assert answer.splitlines()[1].startswith("2596,51,3,"), answer
    finally:
        holder.stop()
