"""Training logs a global explanation of each candidate that has exact contributions (and says
why not for the others), checked against LightGBM's own pred_contrib on the same rows."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from forestops import contract
from forestops.config import Settings
from forestops.modeling.explain import FOREST_NODE_RECORDS
from forestops.modeling.features import frame_to_arrays
from forestops.modeling.tracking import TAG_CANDIDATE, TAG_EXPLANATION, mlflow_uris
from forestops.pipeline.explanation import CHART, DEPENDENCE, MAX_ROWS, TABLE
from forestops.pipeline.train import train
from support.training_data import course_rows, eval_split, seed_samples, tiny

pytestmark = pytest.mark.slow


def test_candidates_log_what_they_rely_on(settings: Settings, dataset_path: Path) -> None:
    settings = tiny(settings, train_candidates=("logistic_regression", "extra_trees", "lightgbm"))
    seed_samples(settings, course_rows(dataset_path, 3000), batches=1)
    result = train(settings)
    client = MlflowClient(settings.mlflow_tracking_uri)
    runs = {c.name: client.get_run(c.run_id) for c in result.candidates}

    linear = runs["logistic_regression"]
    assert linear.data.tags[TAG_EXPLANATION].startswith("none: the model is a LogisticRegression")
    assert not [a for a in client.list_artifacts(linear.info.run_id, "explanation")]

    forest = runs["extra_trees"]  # explained by the kernel, on as many rows as its nodes allow
    features, _ = eval_split(settings)
    with mlflow_uris(settings.mlflow_tracking_uri):
        trees = mlflow.pyfunc.load_model(f"runs:/{forest.info.run_id}/model").unwrap_python_model()
    nodes = sum(tree.tree_.node_count for tree in trees.tree_forest.estimators_)
    rows = min(FOREST_NODE_RECORDS // nodes, MAX_ROWS, len(features))
    assert forest.data.tags[TAG_EXPLANATION].startswith(f"TreeSHAP on {rows} evaluation rows")
    assert TABLE in {a.path for a in client.list_artifacts(forest.info.run_id, "explanation")}

    run = runs["lightgbm"]
    assert run.data.tags[TAG_CANDIDATE] == "lightgbm"
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "explanation")}
    assert {TABLE, CHART, DEPENDENCE} <= logged
    with mlflow_uris(settings.mlflow_tracking_uri):
        body = json.loads(
            Path(
                mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=TABLE)
            ).read_text()
        )
        model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model").unwrap_python_model()
    table = pd.DataFrame(body["data"], columns=body["columns"]).set_index("feature")
    assert sorted(table.index) == sorted(contract.FEATURE_NAMES)
    assert table["mean_abs_contribution"].is_monotonic_decreasing  # strongest first

    # slope has no engineered column: its importance is LightGBM's own, summed over classes
    sample = features.sample(min(MAX_ROWS, len(features)), random_state=settings.train_seed)
    matrix = model.encoder.encode_arrays(*frame_to_arrays(sample))
    booster = model.estimator.booster_
    contributions = np.asarray(booster.predict(matrix, pred_contrib=True))
    per_class = contributions.reshape(len(sample), 7, matrix.shape[1] + 1)
    slope = contract.FEATURE_NAMES.index("slope")
    expected = np.abs(per_class[:, :, slope]).mean(axis=0)
    assert table.loc["slope", "mean_abs_contribution"] == pytest.approx(expected.sum(), abs=1e-9)
    assert table.loc["slope", "class_3"] == pytest.approx(expected[3], abs=1e-9)
