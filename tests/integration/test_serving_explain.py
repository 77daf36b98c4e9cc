"""`?explain=` against the real service on a real tiny LightGBM champion, checked against LightGBM
itself: `Booster.predict(..., pred_contrib=True)` and `raw_score=True` on the same rows."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.linear_model import LogisticRegression

from forestops import contract
from forestops.modeling import explain as explain_module
from forestops.modeling import treeshap
from forestops.modeling.explain import Explainer
from forestops.modeling.features import ContractEncoder, frame_to_arrays
from forestops.serving.app import create_app
from forestops.serving.dependencies import service_state
from forestops.serving.holder import ModelHolder
from support.champion import ChampionStore, champion_store, read_rows, serving


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, dataset_path: Path) -> ChampionStore:
    return champion_store(tmp_path_factory.getbasetemp() / "explain-store", dataset_path)


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
def frame(dataset_path: Path) -> pd.DataFrame:
    """Real rows the champion was not trained on, canonical columns, labels dropped."""
    return read_rows(dataset_path, 3060).iloc[3000:][list(contract.FEATURE_NAMES)]


@pytest.fixture(scope="module")
def lightgbm_view(holder: ModelHolder, frame: pd.DataFrame) -> dict[str, Any]:
    """What LightGBM itself says about `frame`: per-column contributions (n, 7, columns + 1),
    raw scores (n, 7), and the names of the model's input columns."""
    served = holder.current
    assert served is not None
    assert served.explainer is not None
    assert (
        served.explainer.fast is not None
    )  # the compiled kernel answers, checked against LightGBM
    booster = served.model.estimator.booster_
    encoder = served.model.encoder
    matrix = encoder.encode_arrays(*frame_to_arrays(frame))
    contributions = np.asarray(booster.predict(matrix, pred_contrib=True))
    return {
        "contributions": contributions.reshape(len(frame), 7, matrix.shape[1] + 1),
        "raw": np.asarray(booster.predict(matrix, raw_score=True)),
        "columns": list(encoder.get_feature_names_out()),
    }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dict(orient="records")


def test_explain_true_adds_up_to_lightgbms_raw_score_for_the_predicted_class(
    client: TestClient, frame: pd.DataFrame, lightgbm_view: dict[str, Any]
) -> None:
    plain = client.post("/predict", json=_records(frame)).json()["predictions"]
    response = client.post("/predict?explain=true", json=_records(frame))
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    for row, (prediction, unexplained) in enumerate(zip(predictions, plain, strict=True)):
        assert prediction["probabilities"] == unexplained["probabilities"]
        assert "explanations" not in prediction
        explanation = prediction["explanation"]
        label = prediction["cover_type"]
        assert (explanation["cover_type"], explanation["cover_type_name"]) == (
            label,
            contract.CLASS_NAMES[label],
        )
        assert list(explanation["contributions"]) == list(contract.FEATURE_NAMES)
        total = explanation["base_value"] + sum(explanation["contributions"].values())
        assert abs(total - lightgbm_view["raw"][row, label]) < 1e-6
        assert abs(explanation["raw_score"] - lightgbm_view["raw"][row, label]) < 1e-6
        assert explanation["base_value"] == pytest.approx(
            lightgbm_view["contributions"][row, label, -1], abs=1e-12
        )
    # without explain, nothing is added
    assert all(set(p) == {"cover_type", "cover_type_name", "probabilities"} for p in plain)


def test_explain_all_explains_every_class(
    client: TestClient, frame: pd.DataFrame, lightgbm_view: dict[str, Any]
) -> None:
    single = _records(frame.iloc[:1])[0]
    body = client.post("/predict?explain=all", json=single).json()
    prediction = body["predictions"][0]
    explanations = prediction["explanations"]
    assert [e["cover_type"] for e in explanations] == list(contract.CLASS_IDS)
    for class_id, explanation in enumerate(explanations):
        total = explanation["base_value"] + sum(explanation["contributions"].values())
        assert abs(total - lightgbm_view["raw"][0, class_id]) < 1e-6
    assert explanations[prediction["cover_type"]] == prediction["explanation"]


@pytest.mark.parametrize("explain", ["true", "all"])
def test_an_explanation_is_answered_in_front_of_the_router_byte_for_byte_as_the_route(
    store: ChampionStore,
    holder: ModelHolder,
    client: TestClient,
    frame: pd.DataFrame,
    lightgbm_view: dict[str, Any],
    explain: str,
) -> None:
    """`?explain=true|all` on a few records is answered by `serving.fast_predict` (it still
    answers with the route's own dependency broken); any other query reaches the route, and both
    give the same bytes (the kernel is built: `lightgbm_view` waited for it)."""
    records = _records(frame.iloc[:3])
    headers = {"X-Request-ID": "same-request"}
    app = create_app(store.settings, holder)

    def broken() -> None:
        raise RuntimeError("the route was called")

    app.dependency_overrides[service_state] = broken
    with TestClient(app, raise_server_exceptions=False) as broken_route:
        fast = broken_route.post(f"/predict?explain={explain}", json=records, headers=headers)
        assert (
            broken_route.post(f"/predict?explain={explain}&via=router", json=records).status_code
            == 500
        )
    routed = client.post(f"/predict?explain={explain}&via=router", json=records, headers=headers)
    assert fast.status_code == routed.status_code == 200
    assert fast.content == routed.content
    assert "explanation" in fast.json()["predictions"][0]


def test_contract_features_get_exactly_their_columns_contributions(
    client: TestClient, frame: pd.DataFrame, lightgbm_view: dict[str, Any]
) -> None:
    """The documented attribution, written out by hand: a feature's own column, all of the
    columns computed from it alone, an equal share of the columns it shares."""
    predictions = client.post("/predict?explain=true", json=_records(frame)).json()["predictions"]
    columns = lightgbm_view["columns"]
    for row, prediction in enumerate(predictions):
        got = prediction["explanation"]["contributions"]
        per_column = lightgbm_view["contributions"][row, prediction["cover_type"], :-1]
        each = dict(zip(columns, per_column, strict=True))
        expected = {
            "slope": each["slope"],
            "aspect": each["aspect"] + each["aspect_sin"] + each["aspect_cos"],
            "wilderness_area": each["wilderness_area_code"],
            "soil_type": each["soil_type_code"],
            "hillshade_noon": each["hillshade_noon"] + each["hillshade_sum"] / 3,
            "elevation": each["elevation"]
            + (
                each["elevation_minus_vertical_hydrology"]
                + each["elevation_minus_horizontal_hydrology"]
                + each["elevation_minus_roads_fiftieth"]
                + each["elevation_plus_roads_tenth"]
                + each["elevation_minus_roads_tenth"]
                + each["elevation_plus_fire_tenth"]
                + each["elevation_minus_fire_tenth"]
            )
            / 2,
            "horizontal_distance_to_roadways": each["horizontal_distance_to_roadways"]
            + (
                each["hydrology_plus_roads"]
                + each["hydrology_minus_roads_abs"]
                + each["fire_plus_roads"]
                + each["fire_minus_roads_abs"]
                + each["elevation_minus_roads_fiftieth"]
                + each["elevation_plus_roads_tenth"]
                + each["elevation_minus_roads_tenth"]
                + each["roads_plus_twice_fire"]
                + each["twice_roads_plus_fire"]
                + each["roads_minus_twice_fire"]
                + each["twice_roads_minus_fire"]
            )
            / 2,
        }
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, abs=1e-12), name


def test_without_a_compiler_lightgbm_itself_explains_the_same(
    holder: ModelHolder, frame: pd.DataFrame
) -> None:
    """No C compiler on the host: the kernel is not built, a warning says so, and LightGBM's own
    pred_contrib gives the same explanation (what the service then answers with)."""
    served = holder.current
    assert served is not None and served.explainer is not None
    arrays = frame_to_arrays(frame)
    labels = served.predict(*arrays).argmax(axis=1)
    without = Explainer(served.model, compiler="/nonexistent/cc")
    assert without.fast is None
    for only in (labels, None):
        slow, fast = (
            without.explain(*arrays, only=only),
            served.explainer.explain(*arrays, only=only),
        )
        np.testing.assert_array_equal(slow.base, fast.base)
        np.testing.assert_allclose(slow.contributions, fast.contributions, rtol=0, atol=1e-12)


def test_csv_explain_appends_the_predicted_class_contributions(
    client: TestClient, frame: pd.DataFrame, lightgbm_view: dict[str, Any]
) -> None:
    upload = frame.to_csv(index=False).encode()
    response = client.post(
        "/predict/csv?explain=true", files={"file": ("sites.csv", upload, "text/csv")}
    )
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == len(frame)
    for row, record in enumerate(rows):
        label = int(record["cover_type_pred"])
        total = float(record["base_value"]) + sum(
            float(record[f"contribution_{name}"]) for name in contract.FEATURE_NAMES
        )
        assert abs(total - lightgbm_view["raw"][row, label]) < 1e-6
    plain = client.post("/predict/csv", files={"file": ("sites.csv", upload, "text/csv")})
    assert "base_value" not in plain.text.splitlines()[0]


def test_explain_asks_are_bounded_and_checked(
    store: ChampionStore, holder: ModelHolder, frame: pd.DataFrame
) -> None:
    settings = store.settings.model_copy(update={"max_explain_rows": 2})
    with TestClient(create_app(settings, holder)) as limited:
        records = _records(frame.iloc[:3])
        too_many = limited.post("/predict?explain=true", json=records)
        assert too_many.status_code == 413
        assert "MAX_EXPLAIN_ROWS=2" in too_many.json()["detail"]
        assert limited.post("/predict?explain=true", json=records[:2]).status_code == 200
        assert limited.post("/predict", json=records).status_code == 200
        unknown = limited.post("/predict?explain=maybe", json=records[:1])
        assert unknown.status_code == 422
        assert unknown.json()["detail"][0]["loc"] == ["query", "explain"]


def test_a_model_without_exact_contributions_refuses_to_explain_and_still_predicts(
    store: ChampionStore, frame: pd.DataFrame, dataset_path: Path
) -> None:
    linear = LogisticRegression(max_iter=50)
    encoder = ContractEncoder("onehot", engineered=False)
    with serving(store.settings, "forest-cover-linear", encoder, linear, dataset_path) as app:
        records = _records(frame.iloc[:2])
        refused = app.post("/predict?explain=true", json=records)
        assert refused.status_code == 422
        (error,) = refused.json()["detail"]
        assert error["loc"] == ["query", "explain"]
        assert error["type"] == "not_explainable"
        assert "LogisticRegression" in error["msg"] and "LightGBM" in error["msg"]
        upload = {"file": ("s.csv", frame.iloc[:2].to_csv(index=False).encode(), "text/csv")}
        assert app.post("/predict/csv?explain=true", files=upload).status_code == 422
        assert app.post("/predict", json=records).status_code == 200
        assert app.get("/metadata").json()["explanations"] == "none"


def test_an_extra_trees_champion_explains_its_probabilities_over_http(
    store: ChampionStore, frame: pd.DataFrame, dataset_path: Path
) -> None:
    """The small-data champion (a forest of trees): `explain=true` and `all` name the contract's
    features and add up to the probabilities the same answer gives, through the fast path and
    the CSV route alike; /metadata says the compiled kernel answers."""
    forest = ExtraTreesClassifier(8, criterion="entropy", random_state=0)
    encoder = ContractEncoder("onehot")
    with serving(store.settings, "forest-cover-extra-trees", encoder, forest, dataset_path) as app:
        records = _records(frame.iloc[:5])
        answer = app.post("/predict?explain=all", json=records)
        assert answer.status_code == 200
        for prediction in answer.json()["predictions"]:
            explanation = prediction["explanation"]
            assert explanation["cover_type"] == prediction["cover_type"]
            assert list(explanation["contributions"]) == list(contract.FEATURE_NAMES)
            probability = prediction["probabilities"][
                contract.CLASS_IDS.index(prediction["cover_type"])
            ]
            total = explanation["base_value"] + sum(explanation["contributions"].values())
            assert total == pytest.approx(probability, abs=1e-9)
            assert explanation["raw_score"] == pytest.approx(probability, abs=1e-9)
            for every in prediction["explanations"]:
                shown = prediction["probabilities"][contract.CLASS_IDS.index(every["cover_type"])]
                assert every["raw_score"] == pytest.approx(shown, abs=1e-9)
        one = app.post("/predict?explain=true", json=records[:1]).json()["predictions"][0]
        first = answer.json()["predictions"][0]["explanation"]  # summed in another order
        assert one["explanation"]["contributions"] == pytest.approx(
            first["contributions"], abs=1e-12
        )
        upload = {"file": ("s.csv", frame.iloc[:2].to_csv(index=False).encode(), "text/csv")}
        assert app.post("/predict/csv?explain=true", files=upload).status_code == 200
        metadata = app.get("/metadata").json()
        assert (metadata["explanations"], metadata["runtime"]) == ("compiled", "forest")


def test_a_forest_whose_kernel_fails_refuses_to_explain_with_a_422_and_still_predicts(
    store: ChampionStore, frame: pd.DataFrame, dataset_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the kernel explains a forest, and it is built and checked on the first explanation.
    Its check cannot fail on a real forest here (it is exact by construction), so the check is
    replaced by one that fails, as it would out of memory: every explanation, through the fast
    path's size of request and the CSV route alike, is then a 422 naming the reason, never a
    500, and predictions go on."""

    def failing(*args: object, **kwargs: object) -> None:
        raise treeshap.KernelUnavailable("contributions do not add up to predict_proba: 1 off")

    monkeypatch.setattr(treeshap, "checked_forest", failing)
    forest = ExtraTreesClassifier(4, random_state=0)
    encoder = ContractEncoder("onehot")
    with serving(store.settings, "forest-cover-failing", encoder, forest, dataset_path) as app:
        records = _records(frame.iloc[:2])
        assert app.get("/metadata").json()["explanations"] == "compiled"  # not built yet
        for _ in range(2):  # the first builds and fails; the next is refused as fast
            refused = app.post("/predict?explain=true", json=records)
            assert refused.status_code == 422
            (error,) = refused.json()["detail"]
            assert (error["loc"], error["type"]) == (["query", "explain"], "not_explainable")
            assert "do not add up" in error["msg"]
        upload = {"file": ("s.csv", frame.iloc[:2].to_csv(index=False).encode(), "text/csv")}
        assert app.post("/predict/csv?explain=true", files=upload).status_code == 422
        assert app.post("/predict", json=records).status_code == 200
        assert app.get("/metadata").json()["explanations"] == "none"


def test_the_kernel_is_built_on_the_first_explanation_and_lightgbm_answers_until_then(
    store: ChampionStore, frame: pd.DataFrame
) -> None:
    """A replica asked only for predictions never lays out the kernel (seconds of CPU after
    every promotion); the first `?explain=` starts it and is answered by LightGBM's pred_contrib,
    the same numbers the kernel gives once `/metadata` says it answers."""
    fresh = ModelHolder(store.settings)
    fresh.start()
    try:
        with TestClient(create_app(store.settings, fresh)) as app:
            records = _records(frame.iloc[:20])
            assert app.post("/predict", json=records).status_code == 200
            served = fresh.current
            assert served is not None and served.explainer is not None
            assert served.explainer.warmup is None
            assert app.get("/metadata").json()["explanations"] == "lightgbm"
            first = app.post("/predict?explain=all", json=records)
            assert first.status_code == 200
            assert served.explainer.warmup is not None
            served.explainer.warmup.join(120)
            assert app.get("/metadata").json()["explanations"] == "compiled"
            second = app.post("/predict?explain=all", json=records)
            for before, after in zip(
                first.json()["predictions"], second.json()["predictions"], strict=True
            ):
                for explanation, kernel in zip(
                    before["explanations"], after["explanations"], strict=True
                ):
                    assert kernel["base_value"] == pytest.approx(
                        explanation["base_value"], abs=1e-12
                    )
                    for name, value in explanation["contributions"].items():
                        assert kernel["contributions"][name] == pytest.approx(value, abs=1e-9)
    finally:
        fresh.stop()


def test_only_a_brief_explanation_runs_on_the_event_loop(
    store: ChampionStore, frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One record's class on the built kernel is explained on the event loop (a thread hop costs
    a tenth of it); LightGBM's pred_contrib before the kernel is built, and anything over
    BRIEF_WORK, go to a worker thread. A spy around the real `explain` says where it ran."""
    fresh = ModelHolder(store.settings)
    fresh.start()
    try:
        with TestClient(create_app(store.settings, fresh)) as app:
            served = fresh.current
            assert served is not None and served.explainer is not None
            explainer = served.explainer
            where: list[str] = []
            explain = explainer.explain

            def spy(*args: Any, **kwargs: Any) -> Any:
                try:
                    asyncio.get_running_loop()
                    where.append("loop")
                except RuntimeError:  # no loop runs in a worker thread
                    where.append("worker")
                return explain(*args, **kwargs)

            monkeypatch.setattr(explainer, "explain", spy)
            one, two = _records(frame.iloc[:1]), _records(frame.iloc[1:3])
            assert app.post("/predict?explain=true", json=one).status_code == 200
            assert where == ["worker"]  # pred_contrib: the kernel is being built meanwhile
            assert explainer.warmup is not None
            explainer.warmup.join(120)
            labels = served.predict(*frame_to_arrays(frame.iloc[:3])).argmax(axis=1)
            assert explainer.fast is not None
            positions = np.searchsorted(explainer.classes, labels)
            one_class = explainer.fast.work(1, positions[:1])
            assert explainer.fast.work(2, positions[1:]) > one_class
            monkeypatch.setattr(explain_module, "BRIEF_WORK", one_class)
            for query, records, expected in (
                ("true", one, "loop"),
                ("true", two, "worker"),
                ("all", one, "worker"),
            ):
                response = app.post(f"/predict?explain={query}", json=records)
                assert response.status_code == 200
                assert where[-1] == expected, (query, len(records))
    finally:
        fresh.stop()
