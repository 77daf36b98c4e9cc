"""Every endpoint of the inference service against a real trained champion.

TestClient where HTTP adds nothing; the body-size limit and auth headers go over real HTTP
(BackgroundServer) because that is where Content-Length and chunked bodies really happen.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from forestops import contract
from forestops.config import Settings
from forestops.modeling.package import PROBABILITY_COLUMNS
from forestops.serving.app import create_app
from forestops.serving.dependencies import service_state, set_state
from forestops.serving.holder import ModelHolder
from forestops.serving.metrics import ServiceMetrics
from forestops.serving.routes.predict import predict_router
from forestops.webserver import BackgroundServer
from support.champion import ChampionStore, champion_store, read_rows


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, dataset_path: Path) -> ChampionStore:
    return champion_store(tmp_path_factory.getbasetemp() / "serving-api-store", dataset_path)


@pytest.fixture(scope="module")
def holder(store: ChampionStore) -> Iterator[ModelHolder]:
    model_holder = ModelHolder(store.settings)
    model_holder.start()
    yield model_holder
    model_holder.stop()


@pytest.fixture(scope="module")
def client(store: ChampionStore, holder: ModelHolder) -> Iterator[TestClient]:
    with TestClient(create_app(store.settings, holder)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def rows(dataset_path: Path) -> list[dict[str, Any]]:
    """Real rows from the data set, as canonical JSON records (labels dropped)."""
    frame = read_rows(dataset_path, 3100).iloc[3000:]
    return frame[list(contract.FEATURE_NAMES)].to_dict(orient="records")


def test_health_reports_the_served_champion(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "model_loaded": True,
        "model_version": "1",
        "model_uri": "models:/forest-cover@champion",
        "detail": None,
    }


def test_metadata_describes_model_contract_and_classes(
    client: TestClient, store: ChampionStore
) -> None:
    body = client.get("/metadata").json()
    assert body["model_name"] == "forest-cover"
    assert (body["model_version"], body["alias"], body["run_id"]) == ("1", "champion", store.run_a)
    assert body["metrics"] == {"accuracy": 0.9}
    assert body["trained_at"].endswith("+00:00")
    assert body["lineage"]["forestops.kind"] == "candidate"
    assert [f["name"] for f in body["features"]] == list(contract.FEATURE_NAMES)
    aspect = body["features"][1]
    assert (aspect["minimum"], aspect["maximum"], aspect["type"]) == (0, 360, "integer")
    soil = body["features"][-1]
    assert soil["type"] == "category" and len(soil["categories"]) == 40
    assert soil["categories"][28] == {
        "code": "C7745",
        "label": "Como - Legault families complex, extremely stony",
    }
    assert body["classes"][6] == {"id": 6, "name": "Krummholz"}


def test_predict_batch_matches_the_pyfunc_model(
    client: TestClient, holder: ModelHolder, rows: list[dict[str, Any]]
) -> None:
    import pandas as pd

    response = client.post("/predict", json=rows)
    assert response.status_code == 200
    body = response.json()
    assert (body["model_name"], body["model_version"]) == ("forest-cover", "1")
    served = holder.current
    assert served is not None
    assert served.predict != served.model.predict_proba_arrays  # the Booster shortcut is in use
    expected = served.model.predict(None, pd.DataFrame(rows))
    got = np.array([p["probabilities"] for p in body["predictions"]])
    np.testing.assert_allclose(got, expected[list(PROBABILITY_COLUMNS)].to_numpy(), atol=1e-12)
    assert [p["cover_type"] for p in body["predictions"]] == expected["cover_type"].tolist()
    assert [p["cover_type_name"] for p in body["predictions"]] == expected[
        "cover_type_name"
    ].tolist()


def test_large_batch_split_across_threads_keeps_record_order(
    store: ChampionStore, holder: ModelHolder, rows: list[dict[str, Any]]
) -> None:
    import pandas as pd

    batch = [row for _ in range(8) for row in rows]  # 800 records -> 3 slices of ~267
    settings = store.settings.model_copy(update={"inference_threads": 3})
    with TestClient(create_app(settings, holder)) as threaded:
        body = threaded.post("/predict", json=batch).json()
    served = holder.current
    assert served is not None
    assert served.model.estimator.n_jobs == 1  # one thread per model call
    expected = served.model.predict(None, pd.DataFrame(batch))[list(PROBABILITY_COLUMNS)]
    got = np.array([p["probabilities"] for p in body["predictions"]])
    np.testing.assert_allclose(got, expected.to_numpy(), atol=1e-12)


def test_predict_single_record_with_course_names_and_aliases(
    client: TestClient, rows: list[dict[str, Any]]
) -> None:
    canonical = rows[0]
    course = {
        {v: k for k, v in contract.COURSE_NAMES.items()}[name]: value
        for name, value in canonical.items()
    }
    course["Wilderness_Area"] = {"Commanche": "comanche peak", "Cache": "Cache la Poudre"}.get(
        canonical["wilderness_area"], canonical["wilderness_area"].upper()
    )
    course["Soil_Type"] = canonical["soil_type"].removeprefix("C")
    course["Slope"] = float(canonical["slope"])  # 13.0 is an integer in JSON Schema's sense
    one = client.post("/predict", json=canonical).json()["predictions"]
    other = client.post("/predict", json=course).json()["predictions"]
    assert len(one) == 1 and one == other


@pytest.mark.parametrize(
    ("change", "loc", "kind"),
    [
        ({"aspect": 361}, ["body", 1, "aspect"], "less_than_equal"),
        ({"elevation": -1}, ["body", 1, "elevation"], "greater_than_equal"),
        ({"slope": 12.5}, ["body", 1, "slope"], "int_from_float"),
        ({"slope": "12"}, ["body", 1, "slope"], "int_type"),
        ({"slope": True}, ["body", 1, "slope"], "int_type"),
        ({"slope": None}, ["body", 1, "slope"], "int_type"),
        ({"soil_type": "C9999"}, ["body", 1, "soil_type"], "value_error"),
        ({"wilderness_area": 3}, ["body", 1, "wilderness_area"], "string_type"),
        ({"cover_type": 2}, ["body", 1, "cover_type"], "extra_forbidden"),
        ({"Slope": 3}, ["body", 1, "Slope"], "extra_forbidden"),
    ],
)
def test_predict_422_names_record_and_field(
    client: TestClient,
    rows: list[dict[str, Any]],
    change: dict[str, Any],
    loc: list[Any],
    kind: str,
) -> None:
    response = client.post("/predict", json=[rows[0], {**rows[1], **change}, rows[2]])
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert [(e["loc"], e["type"]) for e in errors] == [(loc, kind)]


def test_predict_422_for_missing_field_in_a_single_record(
    client: TestClient, rows: list[dict[str, Any]]
) -> None:
    record = {k: v for k, v in rows[0].items() if k != "hillshade_noon"}
    errors = client.post("/predict", json=record).json()["detail"]
    assert [(e["loc"], e["type"]) for e in errors] == [(["body", "hillshade_noon"], "missing")]


@pytest.mark.parametrize(
    ("body", "kind"),
    [(b"[]", "too_short"), (b"{", "json_invalid"), (b"42", "model_type"), (b"[1]", "model_type")],
)
def test_predict_422_for_malformed_bodies(client: TestClient, body: bytes, kind: str) -> None:
    response = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == kind


def test_predict_413_over_max_batch_rows(
    store: ChampionStore, holder: ModelHolder, rows: list[dict[str, Any]]
) -> None:
    settings = store.settings.model_copy(update={"max_batch_rows": 5})
    with TestClient(create_app(settings, holder)) as small:
        assert small.post("/predict", json=rows[:5]).status_code == 200
        response = small.post("/predict", json=rows[:6])
        assert response.status_code == 413
        assert "MAX_BATCH_ROWS=5" in response.json()["detail"]
        assert (
            small.post("/predict/csv", files={"file": ("a.csv", _csv(rows[:6]))}).status_code == 413
        )


def test_body_limit_413_by_content_length_and_by_streamed_size(
    store: ChampionStore, holder: ModelHolder, rows: list[dict[str, Any]]
) -> None:
    settings = store.settings.model_copy(update={"max_body_bytes": 4096})
    with BackgroundServer(create_app(settings, holder)) as server, httpx.Client() as http:
        assert http.post(f"{server.url}/predict", json=rows[:5]).status_code == 200
        declared = http.post(f"{server.url}/predict", json=rows[:40])
        assert declared.status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: only the streamed size tells
            yield b"["
            for index in range(40):
                yield (b"," if index else b"") + httpx.Request("POST", "/", json=rows[0]).content
            yield b"]"

        streamed = http.post(
            f"{server.url}/predict", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413
        assert http.get(f"{server.url}/health").status_code == 200


def _csv(rows: list[dict[str, Any]], names: list[str] | None = None, sep: str = ",") -> bytes:
    names = names or list(contract.FEATURE_NAMES)
    lines = [sep.join(names)]
    lines += [
        sep.join(str(row.get(contract.canonical_column(n), "x")) for n in names) for row in rows
    ]
    return ("\n".join(lines) + "\n").encode()


def test_predict_csv_with_bom_semicolons_course_header_and_label(
    client: TestClient, rows: list[dict[str, Any]]
) -> None:
    course = [*contract.COURSE_NAMES]
    labelled = [{**row, "cover_type": 9} for row in rows[:20]]
    upload = b"\xef\xbb\xbf" + _csv(labelled, course, ";")
    response = client.post("/predict/csv", files={"file": ("sites.csv", upload, "text/csv")})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    lines = response.text.splitlines()
    header = lines[0].split(";")
    assert header == [*course, "cover_type_pred", "cover_type_name", *PROBABILITY_COLUMNS]
    json_predictions = client.post("/predict", json=rows[:20]).json()["predictions"]
    for line, expected in zip(lines[1:], json_predictions, strict=True):
        cells = line.split(";")
        assert cells[12] == "9"  # the label column comes back untouched
        assert int(cells[13]) == expected["cover_type"]
        assert cells[14] == expected["cover_type_name"]
        np.testing.assert_allclose(
            [float(c) for c in cells[15:]], expected["probabilities"], atol=1e-6
        )


def test_predict_csv_422_names_columns_and_lines(
    client: TestClient, rows: list[dict[str, Any]]
) -> None:
    names = [*contract.FEATURE_NAMES[:-1], "colour", "wilderness_area"]
    bad_header = client.post("/predict/csv", files={"file": ("a.csv", _csv(rows[:2], names))})
    assert bad_header.status_code == 422
    messages = [e["msg"] for e in bad_header.json()["detail"]]
    assert messages == [
        "unknown column 'colour'",
        "column 'wilderness_area' duplicates 'wilderness_area'",
        "missing column(s): soil_type",
    ]
    broken = _csv(rows[:3]).replace(str(rows[1]["elevation"]).encode(), b"12.5", 1)
    bad_row = client.post("/predict/csv", files={"file": ("a.csv", broken)})
    assert bad_row.status_code == 422
    [error] = bad_row.json()["detail"]
    assert error["loc"] == ["body", "file", 3, "elevation"]
    assert error["msg"].startswith("line 3: elevation must be an integer")


def test_metrics_count_requests_by_route_and_predictions_by_class(
    client: TestClient, rows: list[dict[str, Any]]
) -> None:
    client.post("/predict", json=rows[:10])
    client.get("/no/such/path")
    text = client.get("/metrics").text
    assert 'forestops_http_requests_total{method="POST",route="/predict",status="200"}' in text
    assert 'route="<unmatched>"' in text and "/no/such/path" not in text
    assert (
        'forestops_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/predict"}'
        in text
    )
    total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("forestops_predictions_total{")
    )
    assert total >= 10
    assert (
        'forestops_model_info{alias="champion",model_name="forest-cover",model_version="1"' in text
    )
    assert "forestops_model_loaded 1.0" in text
    assert 'forestops_model_status{status="ok"} 1.0' in text
    assert 'forestops_model_reloads_total{outcome="swapped",trigger="startup"} 1.0' in text


def test_reload_when_champion_unchanged_keeps_model(client: TestClient) -> None:
    response = client.post("/reload")
    assert response.status_code == 200
    assert response.json() == {
        "reloaded": False,
        "model_version": "1",
        "detail": "already serving version 1",
    }


@pytest.fixture(scope="module")
def keyed_server(store: ChampionStore, holder: ModelHolder) -> Iterator[str]:
    settings = store.settings.model_copy(
        update={
            "api_keys": (SecretStr("reader-1"), SecretStr("reader-2")),
            "admin_api_key": SecretStr("root-key"),
        }
    )
    with BackgroundServer(create_app(settings, holder)) as server:
        yield server.url


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        ("/predict", {}, 401),
        ("/predict", {"X-API-Key": "wrong"}, 401),
        ("/predict", {"Authorization": "Bearer wrong"}, 401),
        ("/predict", {"X-API-Key": "reader-2"}, 200),
        ("/predict", {"Authorization": "Bearer reader-1"}, 200),
        ("/predict", {"X-API-Key": "root-key"}, 200),
        ("/reload", {}, 401),
        ("/reload", {"X-API-Key": "reader-1"}, 403),
        ("/reload", {"Authorization": "Bearer root-key"}, 200),
    ],
)
def test_api_keys(
    keyed_server: str, rows: list[dict[str, Any]], path: str, headers: dict[str, str], expected: int
) -> None:
    response = httpx.post(f"{keyed_server}{path}", json=rows[0], headers=headers)
    assert response.status_code == expected
    if expected == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_health_metrics_open_and_metadata_closed_with_keys(keyed_server: str) -> None:
    assert httpx.get(f"{keyed_server}/health").status_code == 200
    assert httpx.get(f"{keyed_server}/metrics").status_code == 200
    assert httpx.get(f"{keyed_server}/metadata").status_code == 401
    assert (
        httpx.get(f"{keyed_server}/metadata", headers={"X-API-Key": "reader-1"}).status_code == 200
    )


def test_reload_refused_to_everyone_when_keys_but_no_admin_key(
    store: ChampionStore, holder: ModelHolder
) -> None:
    settings = store.settings.model_copy(update={"api_keys": (SecretStr("reader-1"),)})
    with TestClient(create_app(settings, holder)) as keyed:
        assert keyed.post("/reload", headers={"X-API-Key": "reader-1"}).status_code == 403


def test_openapi_documents_security_limits_and_errors(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"] == {
        "ApiKey": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "One of API_KEYS (or ADMIN_API_KEY); required only when keys are configured.",
        },
        "Bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "The same keys as X-API-Key, sent as `Authorization: Bearer <key>`.",
        },
    }
    predict = spec["paths"]["/predict"]["post"]
    assert predict["security"] == [{"ApiKey": []}, {"Bearer": []}]
    assert {"200", "401", "413", "422", "503"} <= set(predict["responses"])
    body = predict["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert body[0]["properties"]["aspect"]["maximum"] == 360
    assert body[1]["maxItems"] == 10_000
    assert {"401", "403", "409", "502"} <= set(spec["paths"]["/reload"]["post"]["responses"])
    assert "security" not in spec["paths"]["/health"]["get"]


# /predict mounted alone on a bare FastAPI app: the router needs nothing but the state that
# serving.dependencies.set_state puts on the app (no create_app, no lifespan, no middleware).


def bare_app(settings: Settings, holder: ModelHolder) -> tuple[FastAPI, ServiceMetrics]:
    app = FastAPI()
    metrics = ServiceMetrics(holder)
    set_state(app, settings, holder, metrics, None)
    app.include_router(predict_router(settings.max_batch_rows))
    return app, metrics


def test_predict_router_alone_answers_with_the_held_model(
    store: ChampionStore, holder: ModelHolder, rows: list[dict[str, Any]]
) -> None:
    import pandas as pd

    app, metrics = bare_app(store.settings, holder)
    client = TestClient(app)
    response = client.post("/predict", json=rows)
    assert response.status_code == 200
    served = holder.current
    assert served is not None
    expected = served.model.predict(None, pd.DataFrame(rows))
    got = np.array([p["probabilities"] for p in response.json()["predictions"]])
    np.testing.assert_allclose(got, expected[list(PROBABILITY_COLUMNS)].to_numpy(), atol=1e-12)
    counted = metrics.registry.get_sample_value
    total = sum(
        counted("forestops_predictions_total", {"cover_type": str(c.id), "cover_type_name": c.name})
        or 0
        for c in contract.COVER_TYPES
    )
    assert total == len(rows)  # the metrics on app.state, not some other app's
    assert client.get("/health").status_code == 404  # only the predict router is mounted


def test_predict_router_reads_its_limits_from_the_settings_on_app_state(
    store: ChampionStore, holder: ModelHolder, rows: list[dict[str, Any]]
) -> None:
    settings = store.settings.model_copy(update={"max_batch_rows": 2})
    client = TestClient(bare_app(settings, holder)[0])
    response = client.post("/predict", json=rows[:3])
    assert response.status_code == 413
    assert response.json()["detail"] == "3 records, more than MAX_BATCH_ROWS=2"
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["oneOf"][1]["maxItems"] == 2


def test_predict_router_alone_answers_503_until_a_model_is_held(
    store: ChampionStore, rows: list[dict[str, Any]]
) -> None:
    empty = ModelHolder(store.settings)  # never started: nothing loaded
    client = TestClient(bare_app(store.settings, empty)[0])
    response = client.post("/predict", json=rows[0])
    assert response.status_code == 503
    assert response.json()["detail"].startswith("no model loaded: no model loaded yet")


@pytest.mark.parametrize("count", [1, 3])
def test_fast_path_answers_byte_for_byte_as_the_route(
    client: TestClient, rows: list[dict[str, Any]], count: int
) -> None:
    """A plain small `/predict` is answered in front of the router (`serving.fast_predict`); a
    query it does not know (FastAPI ignores an unknown parameter) goes through the route: both
    must give the same bytes."""
    body = rows[0] if count == 1 else rows[:count]
    headers = {"X-Request-ID": "same-request"}
    fast = client.post("/predict", json=body, headers=headers)
    routed = client.post("/predict?explain=false&via=router", json=body, headers=headers)
    assert fast.status_code == routed.status_code == 200
    assert fast.content == routed.content
    assert fast.headers["content-type"] == routed.headers["content-type"] == "application/json"
    assert fast.headers["content-length"] == routed.headers["content-length"]


def test_fast_path_answers_without_the_routes_dependencies(
    store: ChampionStore, holder: ModelHolder, rows: list[dict[str, Any]]
) -> None:
    """With the route's own dependency broken, a plain small request is still answered (the fast
    path took it), and what the fast path leaves to the route (a query, a bad record, a batch
    over its size) reaches the broken route."""
    app = create_app(store.settings, holder)

    def broken() -> None:
        raise RuntimeError("the route was called")

    app.dependency_overrides[service_state] = broken
    with TestClient(app, raise_server_exceptions=False) as broken_client:
        assert broken_client.post("/predict", json=rows[0]).status_code == 200
        assert broken_client.post("/predict?explain=false", json=rows[0]).status_code == 200
        assert broken_client.post("/predict?via=router", json=rows[0]).status_code == 500
        invalid = {**rows[0], "elevation": "high"}
        assert broken_client.post("/predict", json=invalid).status_code == 500
        assert broken_client.post("/predict", json=rows[:40]).status_code == 500


def test_fast_path_replays_the_body_for_the_routes_422(
    client: TestClient, rows: list[dict[str, Any]]
) -> None:
    invalid = [rows[0], {**rows[1], "slope": 91}]
    response = client.post("/predict", json=invalid)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", 1, "slope"]
