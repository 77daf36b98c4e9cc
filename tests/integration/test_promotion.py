"""The promotion gate on the embedded registry: the champion moves only for a better model.

Strength is set through settings: LightGBM on all rows is the strong model, logistic regression
on 100 rows the weak one. The champion is re-scored on the new job's evaluation rows that neither
model trained on, so its score tag must equal the old model's accuracy on THOSE rows (checked
independently here): all of them, or only newer batches' for a champion refitted on every row.
A memorising champion (right on every row it saw, wrong elsewhere) shows why.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from forestops import contract
from forestops.config import Settings
from forestops.modeling.tracking import (
    TAG_CHALLENGER_SCORE,
    TAG_CHAMPION_SCORE,
    TAG_COMPARED_ROWS,
    TAG_DECISION,
    TAG_DECISION_REASON,
    TAG_MAX_BATCH_ID,
    TAG_UNSEEN_ROWS,
    UNSEEN_NEWER_BATCHES,
    mlflow_uris,
)
from forestops.pipeline import promote
from forestops.pipeline.status import read_latest_model
from forestops.pipeline.train import TrainResult, train
from support.champion import log_candidate, memorising_pipeline
from support.training_data import course_rows, eval_split, seed_samples, tiny

pytestmark = pytest.mark.slow

STRONG = {"train_candidates": ("lightgbm",)}
WEAK = {"train_candidates": ("logistic_regression",), "logreg_max_rows": 100}


def champion_version(settings: Settings) -> str:
    client = MlflowClient(settings.mlflow_tracking_uri)
    return str(client.get_model_version_by_alias(settings.model_name, "champion").version)


def version_tags(settings: Settings, version: str) -> dict[str, str]:
    client = MlflowClient(settings.mlflow_tracking_uri)
    return client.get_model_version(settings.model_name, version).tags


def accuracy_of(settings: Settings, version: str, after_batch: int = 0) -> float:
    """A registered version's accuracy on the current store's evaluation rows (of batches after
    `after_batch`)."""
    features, labels = eval_split(settings, after_batch)
    with mlflow_uris(settings.mlflow_tracking_uri):
        model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}/{version}")
    return float(np.mean(model.predict(features)[contract.LABEL].to_numpy() == labels))


def test_weaker_model_after_a_strong_one_leaves_the_champion(
    settings: Settings, dataset_path: Path
) -> None:
    (first_batch,) = seed_samples(settings, course_rows(dataset_path, 2500))
    strong = train(tiny(settings, **STRONG))
    assert (strong.model_version, strong.decision) == ("1", "promoted")
    # New data between the jobs. The champion (LightGBM, refitted on every row of the first
    # batch) is re-scored on the new batch's evaluation rows only, ~100 here.
    seed_samples(settings, course_rows(dataset_path, 500, skip=2500))

    weak = train(tiny(settings, **WEAK, gate_min_rows=50))

    assert (weak.model_version, weak.decision, weak.champion_changed) == ("2", "rejected", False)
    assert champion_version(settings) == "1"
    tags = version_tags(settings, "2")
    assert tags[TAG_DECISION] == "rejected"
    fair_rows = len(eval_split(tiny(settings), first_batch)[1])
    assert tags[TAG_COMPARED_ROWS] == str(fair_rows) and fair_rows >= 50
    assert float(tags[TAG_CHAMPION_SCORE]) == pytest.approx(
        accuracy_of(tiny(settings), "1", first_batch), abs=1e-6
    )
    assert float(tags[TAG_CHAMPION_SCORE]) > float(tags[TAG_CHALLENGER_SCORE])
    assert "<= champion v1" in weak.message and f"on {fair_rows} rows" in weak.message
    status = read_latest_model(settings)
    assert status is not None
    assert (status["version"], status["decision"], status["champion"]["version"]) == (
        "2",
        "rejected",
        "1",
    )


def promoted_second_version(settings: Settings, result: TrainResult) -> dict[str, str]:
    """The tags of version 2, once `result` says it was promoted and the alias agrees."""
    assert (result.model_version, result.decision, result.champion_changed) == (
        "2",
        "promoted",
        True,
    )
    assert champion_version(settings) == "2"
    return version_tags(settings, "2")


def test_stronger_model_after_a_weak_one_takes_over(settings: Settings, dataset_path: Path) -> None:
    seed_samples(settings, course_rows(dataset_path, 2500))
    weak = train(tiny(settings, **WEAK))
    assert weak.decision == "promoted"

    strong = train(tiny(settings, **STRONG))

    tags = promoted_second_version(settings, strong)
    # Same data, same split, a champion not refitted: every evaluation row is compared, and the
    # re-scored champion matches its own logged accuracy exactly.
    assert float(tags[TAG_CHAMPION_SCORE]) == pytest.approx(weak.candidates[0].accuracy, abs=1e-6)
    assert float(tags[TAG_CHALLENGER_SCORE]) == pytest.approx(strong.candidates[0].accuracy)
    assert tags[TAG_COMPARED_ROWS] == str(len(eval_split(tiny(settings))[1]))
    assert float(tags[TAG_CHALLENGER_SCORE]) > float(tags[TAG_CHAMPION_SCORE])


def test_an_unloadable_champion_is_replaced(settings: Settings, dataset_path: Path) -> None:
    seed_samples(settings, course_rows(dataset_path, 1500))
    first = train(tiny(settings, **WEAK))
    # The champion's artifacts are gone (a wiped bucket, a deleted folder): serving could not
    # load it either, so any working model is better than it.
    client = MlflowClient(settings.mlflow_tracking_uri)
    artifacts = client.get_model_version_download_uri(settings.model_name, "1")
    shutil.rmtree(urlparse(artifacts).path)

    second = train(tiny(settings, **WEAK))

    assert (first.decision, second.decision) == ("promoted", "promoted")
    assert champion_version(settings) == "2"
    tags = version_tags(settings, "2")
    assert tags[TAG_CHAMPION_SCORE] == "" and "could not be loaded" in second.message


def test_a_job_killed_while_gating_leaves_a_pending_version_and_the_champion(
    settings: Settings, dataset_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_samples(settings, course_rows(dataset_path, 1500))
    train(tiny(settings, **WEAK))

    # Mocked: the interruption itself (SIGTERM arrives as KeyboardInterrupt in a job process),
    # delivered while the challenger is registered but not yet decided.
    def interrupted(*args: object) -> float:
        raise KeyboardInterrupt("stopped by SIGTERM")

    monkeypatch.setattr(promote, "_compare", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(settings, **STRONG))

    assert champion_version(settings) == "1"
    assert version_tags(settings, "2")[TAG_DECISION] == "pending"
    status = read_latest_model(settings)
    assert status is not None and status["version"] == "1"  # the file still tells the last outcome


def test_registry_disabled_a_weaker_run_leaves_the_better_earlier_run_serving(
    settings: Settings, dataset_path: Path
) -> None:
    settings = settings.model_copy(update={"mlflow_enable_model_registry": False})
    seed_samples(settings, course_rows(dataset_path, 2500))
    strong = train(tiny(settings, **STRONG))
    assert (strong.decision, strong.champion_changed) == ("unregistered", True)

    weak = train(tiny(settings, **WEAK))

    assert (weak.decision, weak.champion_changed, weak.model_version) == (
        "unregistered",
        False,
        None,
    )
    assert weak.message.endswith("a better earlier run stays served")
    assert weak.champion_uri == f"runs:/{strong.candidates[0].run_id}/model"
    assert MlflowClient(settings.mlflow_tracking_uri).search_registered_models() == []


def plant_refitted_memoriser(settings: Settings, frame: pd.DataFrame, batch_id: int) -> str:
    """A champion fitted on every row of `frame` (batch `batch_id`), evaluation rows included, and
    tagged as a refitted training run is: it is right on all of them, wrong on any other row."""
    run_id, version = log_candidate(settings, memorising_pipeline(frame), accuracy=1.0)
    client = MlflowClient(settings.mlflow_tracking_uri)
    client.set_tag(run_id, TAG_MAX_BATCH_ID, str(batch_id))
    client.set_tag(run_id, TAG_UNSEEN_ROWS, UNSEEN_NEWER_BATCHES)
    assert version is not None
    return version


def test_a_refitted_champion_is_compared_only_on_newer_batches(
    settings: Settings, dataset_path: Path
) -> None:
    settings = tiny(settings, **{**WEAK, "logreg_max_rows": 1000}, gate_min_rows=50)
    old = course_rows(dataset_path, 2500)
    (first_batch,) = seed_samples(settings, old)
    plant_refitted_memoriser(settings, old, first_batch)
    seed_samples(settings, course_rows(dataset_path, 500, skip=2500))

    result = train(settings)

    (challenger,) = result.candidates
    # On every evaluation row the memoriser wins: most of them are rows it was fitted on.
    assert accuracy_of(settings, "1") > challenger.accuracy
    # On the rows neither saw it is wrong everywhere, and the challenger takes over.
    tags = promoted_second_version(settings, result)
    _, labels = eval_split(settings, first_batch)
    assert tags[TAG_COMPARED_ROWS] == str(len(labels)) and len(labels) >= 50
    assert float(tags[TAG_CHAMPION_SCORE]) == pytest.approx(
        accuracy_of(settings, "1", first_batch), abs=1e-6
    )
    assert float(tags[TAG_CHALLENGER_SCORE]) > float(tags[TAG_CHAMPION_SCORE])
    assert f"batches after {first_batch}" in tags[TAG_DECISION_REASON]


def test_too_few_rows_unseen_by_the_champion_keep_it(
    settings: Settings, dataset_path: Path
) -> None:
    settings = tiny(settings, **{**WEAK, "logreg_max_rows": 1000})  # GATE_MIN_ROWS: 200
    old = course_rows(dataset_path, 2500)
    (first_batch,) = seed_samples(settings, old)
    plant_refitted_memoriser(settings, old, first_batch)
    seed_samples(settings, course_rows(dataset_path, 300, skip=2500))

    result = train(settings)

    fair_rows = len(eval_split(settings, first_batch)[1])
    assert 0 < fair_rows < 200
    assert (result.model_version, result.decision, result.champion_changed) == (
        "2",
        "rejected",
        False,
    )
    assert champion_version(settings) == "1"
    tags = version_tags(settings, "2")
    assert tags[TAG_COMPARED_ROWS] == str(fair_rows) and tags[TAG_CHAMPION_SCORE] == ""
    assert (
        f"{fair_rows} evaluation rows unseen by champion v1, at least 200 needed"
        in tags[TAG_DECISION_REASON]
    )
