"""A forest of trees (the small-data champion, extra trees) is served without scikit-learn's
per-tree overhead, with its exact answers, and explains them in the contract's twelve features,
exactly: base + contributions is each class's probability as it is served."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.pipeline import Pipeline

from forestops import contract
from forestops.modeling import explain, treeshap
from forestops.modeling.explain import Explainer, NotExplainable
from forestops.modeling.features import ContractEncoder, frame_to_arrays
from forestops.modeling.package import ForestCoverModel
from forestops.modeling.tracking import TAG_EXPLANATION, mlflow_uris
from forestops.pipeline.explanation import log_global_explanation
from forestops.serving.predictor import make_predictor
from support.training_data import course_rows


@pytest.fixture(scope="module")
def model(dataset_path: Path) -> ForestCoverModel:
    rows = course_rows(dataset_path, 2000)
    pipeline = Pipeline(
        [
            ("encode", ContractEncoder("onehot")),
            ("model", ExtraTreesClassifier(8, criterion="entropy", random_state=0)),
        ]
    )
    return ForestCoverModel(pipeline.fit(rows[list(contract.FEATURE_NAMES)], rows[contract.LABEL]))


def test_extra_trees_explain_each_class_probability_in_contract_features(
    model: ForestCoverModel, dataset_path: Path
) -> None:
    records = frame_to_arrays(course_rows(dataset_path, 40, skip=5000))
    explainer = Explainer(model)
    assert explainer.method == "compiled"  # nothing else explains a forest
    explanation = explainer.explain(*records, threads=2)
    probabilities = model.predict_proba_arrays(*records)
    positions = [contract.CLASS_IDS.index(c) for c in explanation.classes.tolist()]
    assert explanation.contributions.shape == (40, len(explanation.classes), 12)
    assert np.abs(explanation.raw_scores - probabilities[:, positions]).max() <= 1e-9
    predicted = explanation.classes[explanation.raw_scores.argmax(axis=1)]
    only = explainer.explain(*records, only=predicted, wait=False)
    rows = np.arange(40)
    at = np.searchsorted(explanation.classes, predicted)
    assert np.abs(only.contributions[rows, at] - explanation.contributions[rows, at]).max() <= 1e-12


@pytest.mark.parametrize(
    "compiler",
    [
        "cc",  # the trees walked in C (forest_walk.c)
        "/nonexistent/cc",  # no compiler: each tree's tree_.predict, and a warning saying so
    ],
)
def test_the_service_asks_the_trees_directly_for_predict_probas_very_bits(
    model: ForestCoverModel,
    dataset_path: Path,
    compiler: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    records = frame_to_arrays(course_rows(dataset_path, 300, skip=5000))
    predict, runtime = make_predictor(model, compiler=compiler)
    assert runtime == "forest"
    fell_back = "asked one by one" in caplog.text
    assert fell_back == (compiler == "/nonexistent/cc")
    assert np.array_equal(predict(*records), model.predict_proba_arrays(*records))
    assert np.array_equal(
        predict(*(part[:1] for part in records)),
        model.predict_proba_arrays(*(part[:1] for part in records)),
    )


def test_a_forest_too_large_to_lay_out_is_refused_with_its_size(
    model: ForestCoverModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(explain, "MAX_FOREST_NODES", 100)
    with pytest.raises(NotExplainable, match=r"ExtraTreesClassifier of [\d,]+ nodes"):
        Explainer(model)


def test_without_a_compiler_a_forest_cannot_explain(model: ForestCoverModel) -> None:
    with pytest.raises(NotExplainable, match="need a C compiler"):
        Explainer(model, compiler="/nonexistent/cc")


def test_a_forest_whose_kernel_fails_its_check_says_so_and_training_logs_why(
    model: ForestCoverModel, dataset_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel's check cannot fail on a real forest (it is exact by construction), so it is
    replaced by one that fails as it would out of memory: the explainer refuses with the reason,
    says `none`, and training's global explanation tags why instead of failing the job."""

    def failing(*args: object, **kwargs: object) -> None:
        raise treeshap.KernelUnavailable("contributions do not add up to predict_proba: 1 off")

    monkeypatch.setattr(treeshap, "checked_forest", failing)
    explainer = Explainer(model)
    assert not explainer.answers_at_once
    with pytest.raises(NotExplainable, match="kernel failed: contributions do not add up"):
        explainer.verify()
    assert explainer.method == "none"

    with mlflow_uris(f"sqlite:///{tmp_path / 'mlflow.db'}"):
        with mlflow.start_run() as run:
            log_global_explanation(model, course_rows(dataset_path, 50, skip=5000), 0, "cc")
        tag = mlflow.get_run(run.info.run_id).data.tags[TAG_EXPLANATION]
    assert tag.startswith("none: the ExtraTreesClassifier's TreeSHAP kernel failed")
