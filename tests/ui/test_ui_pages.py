"""Every page of the UI, driven by Streamlit's AppTest against the real stack of conftest.py
(real inference service on loopback, seeded SQLite store, real training in a SQLite MLflow)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from pydantic import SecretStr
from streamlit.testing.v1 import AppTest
from ui_harness import SEEDED_BATCHES, SEEDED_ROWS, UiStack, assert_clean, open_page, seed_store

from forestops import contract
from forestops.config import Settings
from forestops.ui.csv_input import EXAMPLE_CSV
from forestops.ui.i18n import TEXT
from forestops.webserver import BackgroundServer, free_port
from support.training_data import course_rows

pytestmark = pytest.mark.postgres


def _texts(app: AppTest, kind: str) -> list[str]:
    return [element.value for element in getattr(app, kind)]


def _charts(app: AppTest) -> dict[str, dict]:
    """Plotly figures on the page by their key, as the browser would receive them."""
    charts = {}
    for element in app.get("plotly_chart"):
        key = element.proto.id.rsplit("-", 1)[-1] if element.proto.id else ""
        charts[key] = json.loads(element.proto.spec)
    return charts


def _metric(app: AppTest, label: str) -> str:
    return next(m.value for m in app.metric if m.label == label)


def _table(app: AppTest, column: str) -> pd.DataFrame:
    """The table on the page that has `column` (st.dataframe carries no key in AppTest)."""
    tables = [d.value for d in app.dataframe if column in d.value.columns]
    assert tables, f"no table with a {column!r} column"
    return tables[0]


def _values(data: object) -> list[object]:
    """A Plotly trace array: a list, or the base64 typed array Plotly 6 writes for numpy data."""
    if isinstance(data, dict) and "bdata" in data:
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"]).tolist()
    assert isinstance(data, list)
    return data


def example_record() -> dict[str, object]:
    """The design's example row, typed as the API wants it (JSON integers, category codes)."""
    values = EXAMPLE_CSV.splitlines()[1].split(",")
    record = dict(zip(contract.FEATURE_NAMES, values, strict=True))
    return {**record, **{name: int(record[name]) for name in contract.NUMERIC_NAMES}}


def _upload(app: AppTest, name: str, data: bytes) -> AppTest:
    app.file_uploader(key="csv_file").set_value((name, data, "text/csv"))
    app.run()
    assert_clean(app)
    return app


def test_home_shows_live_figures_and_the_cover_types(ui_env: UiStack) -> None:
    app = open_page("home")
    assert not app.error and not app.warning, _texts(app, "error") + _texts(app, "warning")
    assert _metric(app, "Rows ingested") == f"{SEEDED_ROWS:,}"
    assert _metric(app, "Batches") == str(SEEDED_BATCHES)
    assert _metric(app, "Inference API") == "ok"
    assert _metric(app, "Champion version") == "1"
    assert _metric(app, "Accuracy").endswith("%")
    captions = " ".join(_texts(app, "caption"))
    assert all(cover.description.en in captions for cover in contract.COVER_TYPES)


def test_single_prediction_shows_the_class_the_service_gives(ui_env: UiStack) -> None:
    app = open_page("predict")
    assert len(app.number_input) == len(contract.NUMERIC_FEATURES)
    record = example_record()
    for feature in contract.NUMERIC_FEATURES:
        app.number_input(key=f"single_{feature.name}").set_value(int(record[feature.name]))
    app.selectbox(key="single_wilderness_area").set_value(record["wilderness_area"])
    app.selectbox(key="single_soil_type").set_value(record["soil_type"])
    app.button(key="single_predict").click().run()
    assert_clean(app)
    expected = contract.CLASS_NAMES[ui_env.predict([record])[0]]
    assert any(f"**{expected}**" in text for text in _texts(app, "success")), _texts(app, "error")
    probabilities = _charts(app)["single_probabilities"]["data"]
    assert sum(len(trace["y"]) for trace in probabilities) == len(contract.CLASS_IDS)


@pytest.mark.parametrize(
    ("language", "towards", "away", "elevation"),
    [
        ("en", "towards", "away from", "Elevation 2,596 m"),
        ("es", "a favor de", "en contra de", "Elevación 2.596 m"),
    ],
)
def test_a_single_prediction_says_why_in_words_and_bars(
    ui_env: UiStack, language: str, towards: str, away: str, elevation: str
) -> None:
    record = example_record()
    explained = httpx.post(
        f"{ui_env.api_url}/predict?explain=true", json=[record], timeout=30
    ).json()["predictions"][0]["explanation"]
    app = open_page("predict", language)
    for feature in contract.NUMERIC_FEATURES:
        app.number_input(key=f"single_{feature.name}").set_value(int(record[feature.name]))
    app.button(key="single_predict").click().run()
    assert_clean(app)
    cover = contract.COVER_TYPES[explained["cover_type"]]
    name = cover.name_es if language == "es" else cover.name
    assert TEXT["why_title"][language].format(name=name) in [h.value for h in app.subheader]
    reasons = " ".join(_texts(app, "markdown"))
    strongest = max(explained["contributions"].values(), key=abs)
    amount = f"{strongest:+.2f}".replace(".", "," if language == "es" else ".")
    assert f"→ {towards if strongest >= 0 else away} {name} {amount}" in reasons
    bars = _charts(app)["single_explanation"]["data"][0]
    assert len(_values(bars["y"])) == len(contract.FEATURE_NAMES)
    assert elevation in _values(bars["y"])
    pushes = dict(zip(_values(bars["y"]), _values(bars["x"]), strict=True))
    assert pushes[elevation] == pytest.approx(explained["contributions"]["elevation"])
    assert sum(pushes.values()) + explained["base_value"] == pytest.approx(
        explained["raw_score"], abs=1e-6
    )


def test_the_design_example_csv_works_as_is(ui_env: UiStack) -> None:
    app = _upload(open_page("predict"), "example.csv", EXAMPLE_CSV.encode())
    assert not app.error, _texts(app, "error")
    result = _table(app, "cover_type_pred")
    expected = ui_env.predict([example_record()])
    assert result["cover_type_pred"].tolist() == expected
    assert result["Cover type"].tolist() == [contract.CLASS_NAMES[expected[0]]]
    reasons = [result[f"Reason {n}"][0] for n in (1, 2, 3)]
    assert all(
        " → " in reason and contract.CLASS_NAMES[expected[0]] in reason for reason in reasons
    )
    assert "contribution_elevation" not in result.columns  # in the download, not on the page
    assert any(button.label == "Download predictions" for button in app.get("download_button"))


def test_a_course_csv_with_labels_is_scored_against_them(
    ui_env: UiStack, dataset_path: Path
) -> None:
    rows = course_rows(dataset_path, 50, skip=SEEDED_ROWS)  # rows the model never saw
    course = rows.rename(columns={v: k for k, v in contract.COURSE_NAMES.items()})
    app = _upload(open_page("predict"), "course.csv", course.to_csv(index=False).encode())
    result = _table(app, "cover_type_pred")
    features = rows[list(contract.FEATURE_NAMES)].to_dict("records")
    assert result["cover_type_pred"].tolist() == ui_env.predict(features)
    truth = (rows[contract.LABEL] == result["cover_type_pred"]).mean()
    assert _metric(app, "Accuracy against the file's cover_type") == f"{truth:.1%}"


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        (
            "missing.csv",
            b"elevation,aspect,slope\n2596,51,3\n",
            "missing columns: horizontal_distance_to_hydrology",
        ),
        (
            "unknown.csv",
            EXAMPLE_CSV.replace("soil_type", "soil_type,colour")
            .replace("C7745", "C7745,red")
            .encode(),
            "unknown columns: colour",
        ),
        ("binary.csv", bytes(range(256)) * 4, "This file is not a text CSV"),
        ("prose.csv", b"Dear team,\nplease find attached.\n", "This does not look like a forest"),
        ("header-only.csv", (",".join(contract.FEATURE_NAMES) + "\n").encode(), "no data rows"),
        (
            "out-of-range.csv",
            EXAMPLE_CSV.replace("2596,", "99999,").encode(),
            "elevation=99999 outside [0, 5000]",
        ),
    ],
)
def test_bad_csvs_get_a_clear_message(
    ui_env: UiStack, name: str, data: bytes, expected: str
) -> None:
    app = _upload(open_page("predict"), name, data)
    errors = " ".join(_texts(app, "error"))
    assert expected in errors, errors
    assert not [d for d in app.dataframe if "cover_type_pred" in d.value.columns]


def test_the_table_predicts_edited_added_and_remaining_rows_in_one_call(ui_env: UiStack) -> None:
    app = open_page("predict")
    shown = app.data_editor[0].value
    assert len(shown) == 3
    added = {
        **example_record(),
        "elevation": 3400,
        "wilderness_area": "Neota",
        "soil_type": "C8771",
    }
    app.session_state["batch_editor"] = {  # what the browser sends after these edits
        "edited_rows": {1: {"slope": 40}},
        "added_rows": [added],
        "deleted_rows": [0],
    }
    app.button(key="batch_predict").click().run()
    assert_clean(app)
    result = _table(app, "confidence")
    kept = shown.iloc[1:].assign(slope=[40, shown.iloc[2]["slope"]]).to_dict("records")
    records = [
        {**row, **{name: int(row[name]) for name in contract.NUMERIC_NAMES}}
        for row in [*kept, added]
    ]
    assert result["elevation"].tolist() == [r["elevation"] for r in records]
    assert result["cover_type"].tolist() == ui_env.predict(records)
    assert result["Reason 1"].str.contains(" → ").all()


def test_analytics_charts_the_ingested_data(ui_env: UiStack) -> None:
    app = open_page("analytics")
    assert not app.error, _texts(app, "error")
    charts = _charts(app)
    assert set(charts) >= {
        "class_distribution",
        "rows_per_batch",
        "feature_by_class",
        "elevation_scatter",
        "correlation",
        "quarantine_reasons",
    }
    counted = sum(sum(_values(trace["y"])) for trace in charts["class_distribution"]["data"])
    assert counted == SEEDED_ROWS
    reasons = _table(app, "Reason")
    assert reasons["Rows"].sum() == len(ui_env.quarantine_reasons)
    assert set(reasons["Column"]) == {"elevation", "slope", "soil_type"}
    app.selectbox(key="scatter_feature").set_value("slope").run()
    assert_clean(app)
    assert _charts(app)["elevation_scatter"]["layout"]["xaxis"]["title"]["text"] == "Slope (°)"


def test_model_page_shows_champion_candidates_matrix_and_history(ui_env: UiStack) -> None:
    app = open_page("model")
    assert not app.error and not app.warning, _texts(app, "error") + _texts(app, "warning")
    assert _metric(app, "Model version") == "1"
    candidates = _table(app, "candidate")
    assert set(candidates["candidate"]) == {"random_forest", "lightgbm"}
    assert "candidates_chart" in _charts(app)
    assert app.image, "the champion's confusion matrix figure is shown"
    history = _table(app, "decision")
    assert history["decision"].tolist() == ["promoted"]
    assert history["aliases"].tolist() == ["champion"]
    links = [element.proto.url for element in app.get("link_button")]
    assert links == ["http://127.0.0.1:5000"]


def test_model_page_shows_what_the_champion_relies_on(ui_env: UiStack) -> None:
    from mlflow.tracking import MlflowClient

    from forestops.pipeline.explanation import TABLE

    client = MlflowClient(ui_env.settings.mlflow_tracking_uri)
    champion = client.get_model_version_by_alias(ui_env.settings.model_name, "champion")
    folder = client.download_artifacts(champion.run_id, TABLE)
    body = json.loads(Path(folder).read_text())
    logged = pd.DataFrame(body["data"], columns=body["columns"])
    for language in ("en", "es"):
        app = open_page("model", language)
        assert TEXT["global_importance"][language] in [h.value for h in app.subheader]
        bars = _charts(app)["global_importance_chart"]["data"][0]
        labels = [TEXT[f"feature.{name}"][language] for name in logged["feature"]]
        assert _values(bars["y"]) == labels[::-1]  # strongest at the top
        assert _values(bars["x"]) == pytest.approx(logged["mean_abs_contribution"][::-1].tolist())


def test_status_page_is_green_when_everything_runs(ui_env: UiStack) -> None:
    app = open_page("status")
    successes = _texts(app, "success")
    assert len(successes) == 3 and not app.error, _texts(app, "error") + _texts(app, "warning")
    assert f"{SEEDED_ROWS:,} rows in {SEEDED_BATCHES} batches" in " ".join(successes)
    configuration = _table(app, "Value")
    assert ui_env.api_url in configuration["Value"].tolist()


def test_spanish_is_one_switch_away(ui_env: UiStack) -> None:
    app = open_page("status")
    app.segmented_control(key="language_settings").set_value("es").run()
    assert_clean(app)
    assert app.title[0].value == TEXT["status_title"]["es"]
    assert f"{SEEDED_ROWS:,} filas en {SEEDED_BATCHES} lotes".replace(",", ".") in " ".join(
        _texts(app, "success")
    )
    app.switch_page("views/predict.py").run()
    app.button(key="single_predict").click().run()
    spoken = " ".join(_texts(app, "success"))
    assert "Tipo de cubierta predicho" in spoken
    assert any(cover.name_es in spoken for cover in contract.COVER_TYPES)
    assert re.fullmatch(r"\d{1,3},\d\u00a0%", _metric(app, "Confianza")), _metric(app, "Confianza")
    app.switch_page("views/home.py").run()
    captions = " ".join(_texts(app, "caption"))
    assert all(cover.description.es in captions for cover in contract.COVER_TYPES)


def test_every_page_says_plainly_that_nothing_runs(offline_env: Path) -> None:
    """API down, no database file, no MLflow store: sentences on every page, never a traceback."""
    for page in ("home", "predict", "analytics", "model", "status"):
        app = open_page(page)
        said = " ".join(_texts(app, "error") + _texts(app, "warning") + _texts(app, "info"))
        assert said, page
        if page in ("home", "predict", "model"):
            assert "not answering" in said, (page, said)
    assert not offline_env.exists(), "the UI created files in an empty home"
    predict = open_page("predict")
    predict.button(key="single_predict").click().run()
    assert "The inference API is not reachable" in " ".join(_texts(predict, "error"))
    status = open_page("status")
    assert "Not reachable" in status.error[0].value


def test_a_migrated_but_empty_database_is_explained(offline_env: Path) -> None:
    from forestops.config import get_settings
    from forestops.store.database import upgrade

    upgrade(get_settings().database_url)
    home = open_page("home")
    assert "holds no rows yet" in " ".join(_texts(home, "info"))
    analytics = open_page("analytics")
    assert "No rows ingested yet" in " ".join(_texts(analytics, "info"))


def test_the_service_answering_422_is_shown_field_by_field(ui_env: UiStack) -> None:
    body = [
        {**{n: 1 for n in contract.NUMERIC_NAMES}, "wilderness_area": "Mars", "soil_type": "C7745"}
    ]
    response = httpx.post(f"{ui_env.api_url}/predict", json=body, timeout=30)
    assert response.status_code == 422  # the shape the UI's message is built from
    app = _upload(
        open_page("predict"),
        "mars.csv",
        EXAMPLE_CSV.replace("Rawah", "Mars").encode(),
    )
    errors = " ".join(_texts(app, "error"))
    assert "rejected the input" in errors and "Mars" in errors, errors


def test_a_file_over_the_batch_limit_is_refused_with_the_limit(ui_env: UiStack) -> None:
    limit = ui_env.settings.max_batch_rows
    header, row = EXAMPLE_CSV.splitlines()
    data = "\n".join([header, *[row] * (limit + 1)]).encode()
    errors = " ".join(_texts(_upload(open_page("predict"), "huge.csv", data), "error"))
    assert "Too many rows for one request" in errors and str(limit) in errors, errors


def test_home_and_analytics_read_postgresql_too(
    ui_env: UiStack, pg_url: str, dataset_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reasons = seed_store(Settings(database_url=pg_url), dataset_path, rows=600, batches=2)
    monkeypatch.setenv("DATABASE_URL", pg_url)
    home = open_page("home")
    assert _metric(home, "Rows ingested") == "600"
    analytics = open_page("analytics")
    assert not analytics.error, _texts(analytics, "error")
    assert len(_charts(analytics)) == 6
    assert _table(analytics, "Reason")["Rows"].sum() == len(reasons)


def test_services_that_refuse_connections_become_sentences(
    ui_env: UiStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database server and a tracking server that are down: red, named, no traceback."""
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    status = open_page("status")
    reds = _texts(status, "error")
    assert len(reds) == 2 and all("Not reachable" in red for red in reds), reds
    assert "Reachable, serving model version 1." in _texts(status, "success")
    for page in ("home", "analytics", "model"):
        said = " ".join(_texts(open_page(page), "error"))
        assert "cannot be read right now" in said, (page, said)


def test_the_ui_presents_the_configured_api_key(
    ui_env: UiStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from forestops.serving.app import create_app

    keyed = ui_env.settings.model_copy(update={"api_keys": (SecretStr("s3cret"),)})
    with BackgroundServer(create_app(keyed, holder=ui_env.api.state.holder)) as service:
        monkeypatch.setenv("INFERENCE_API_URL", service.url)
        refused = open_page("predict")
        refused.button(key="single_predict").click().run()
        assert "refused the UI's API key" in " ".join(_texts(refused, "error"))

        monkeypatch.setenv("API_KEYS", "s3cret")  # the UI sends the first of the service's keys
        allowed = open_page("predict")
        allowed.button(key="single_predict").click().run()
        assert not allowed.error, _texts(allowed, "error")
        assert "Predicted cover type" in " ".join(_texts(allowed, "success"))


def test_a_service_without_a_model_yet_is_explained(
    ui_env: UiStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The first minutes of `make up`: the service runs, nothing has been trained yet."""
    from forestops.serving.app import create_app

    empty = Settings(
        forestops_home=tmp_path / "fresh",
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'fresh-mlflow.db'}",
        model_startup_wait_s=0,
        model_poll_interval_s=0,
    )
    with BackgroundServer(create_app(empty)) as service:
        monkeypatch.setenv("INFERENCE_API_URL", service.url)
        app = open_page("predict")
        assert "has no model yet" in " ".join(_texts(app, "warning"))
        app.button(key="single_predict").click().run()
        assert "has no model to serve yet" in " ".join(_texts(app, "warning"))
        home = open_page("home")
        assert _metric(home, "Inference API") == "no model"
        assert "has no model yet" in " ".join(_texts(home, "warning"))


def test_model_page_shows_the_operator_audit_trail(ui_env: UiStack) -> None:
    from forestops.pipeline.model_ops import promote_version

    settings = ui_env.settings
    before = open_page("model")
    assert "No operator action yet" in " ".join(_texts(before, "info"))
    # A real action that changes nothing: v1 already is the champion, so it is refused, audited.
    outcome = promote_version(settings, "1", actor="carol", reason="checking the trail")
    assert not outcome.done

    app = open_page("model")

    trail = _table(app, "actor")
    assert trail[["action", "to_version", "outcome", "actor", "reason"]].values.tolist() == [
        ["promote", "1", "refused", "carol", "checking the trail"]
    ]
    assert trail["detail"].tolist() == ["v1 already is the champion"]
