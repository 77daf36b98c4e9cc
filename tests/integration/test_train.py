"""Training end to end on the embedded MLflow (sqlite + local artifacts), on real rows of the data set.

Tiny estimators (settings) keep each training to seconds; what is checked is the behaviour:
what lands in MLflow, the registry, `latest_model.json`, and that the champion loaded back by URI
predicts raw course-format rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from forestops import contract
from forestops.cli import app
from forestops.config import Settings
from forestops.modeling.integrity import load_verified
from forestops.modeling.tracking import (
    TAG_CANDIDATE,
    TAG_CHALLENGER_SCORE,
    TAG_CHAMPION_SCORE,
    TAG_DATA_HASH,
    TAG_DECISION,
    TAG_KIND,
    TAG_MAX_BATCH_ID,
    TAG_UNSEEN_ROWS,
    UNSEEN_EVAL_SHARE,
    UNSEEN_NEWER_BATCHES,
    mlflow_uris,
    resolve_serving_model,
)
from forestops.pipeline import train as train_module
from forestops.pipeline.retention import TAG_PRUNED, TAG_PRUNED_MODELS, logged_models
from forestops.pipeline.status import read_latest_model
from forestops.pipeline.train import train
from forestops.serving.shipped_forest import ARTIFACT_ROOT as SHIPPED_LIBRARIES
from forestops.store.reads import training_frame
from support.training_data import course_rows, eval_split, seed_samples, tiny

pytestmark = pytest.mark.slow


def test_train_tracks_registers_and_serves_the_best_candidate(
    settings: Settings, dataset_path: Path
) -> None:
    settings = tiny(settings)
    batch_ids = seed_samples(settings, course_rows(dataset_path, 3000), batches=3)

    result = train(settings)

    assert result.status == "trained"
    assert [c.name for c in result.candidates] == list(settings.train_candidates)
    best = max(result.candidates, key=lambda c: c.accuracy)
    assert result.best == best.name
    assert (result.rows, result.max_batch_id) == (3000, batch_ids[-1])
    assert (result.decision, result.champion_changed, result.model_version) == (
        "promoted",
        True,
        "1",
    )
    assert result.model_uri == "models:/forest-cover/1"
    assert best.name in result.summary() and "promoted" in result.summary()

    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment_name)
    assert experiment is not None
    assert experiment.artifact_location == (settings.forestops_home / "mlruns").as_uri()

    parent = client.get_run(result.run_id)
    lineage = training_frame(settings).lineage
    assert parent.data.tags[TAG_KIND] == "training_job"
    assert parent.data.tags[TAG_DATA_HASH] == lineage.data_hash == result.data_hash
    assert parent.data.tags[TAG_MAX_BATCH_ID] == str(batch_ids[-1])
    assert parent.data.tags["forestops.batch_ids"] == f"{batch_ids[0]}-{batch_ids[-1]}"
    assert parent.data.params["rows"] == "3000"  # ~600 evaluate: their content hash decides
    assert parent.data.params["eval_rows"] == str(len(eval_split(settings)[1]))
    assert {d.dataset.name for d in parent.inputs.dataset_inputs} == {
        "forest_cover_samples-train",
        "forest_cover_samples-eval",
    }

    children = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'"
    )
    assert {run.data.tags[TAG_CANDIDATE] for run in children} == set(settings.train_candidates)
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags[TAG_KIND] == "candidate"
        metrics = run.data.metrics
        for key in ("accuracy", "macro_f1", "log_loss", "fit_seconds", "predict_seconds"):
            assert key in metrics
        assert "recall_spruce_fir" in metrics and "recall_lodgepole_pine" in metrics
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"confusion_matrix.png", "classification_report.json"} <= artifacts
        contexts = {
            next(t.value for t in d.tags if t.key == "mlflow.data.context")
            for d in run.inputs.dataset_inputs
        }
        assert contexts == {"training", "evaluation"}

    version = client.get_model_version_by_alias(settings.model_name, "champion")
    assert (str(version.version), version.run_id) == ("1", best.run_id)
    assert version.tags[TAG_DECISION] == "promoted"
    assert float(version.tags[TAG_CHALLENGER_SCORE]) == pytest.approx(best.accuracy)
    assert version.tags[TAG_CHAMPION_SCORE] == ""  # there was no champion to beat

    status = read_latest_model(settings)
    assert status is not None
    assert status["model_uri"] == "models:/forest-cover/1" and status["version"] == "1"
    assert status["run_id"] == best.run_id
    assert status["metrics"]["accuracy"] == pytest.approx(best.accuracy)
    assert status["champion"]["version"] == "1" and status["trained_at"]

    # Small data: once scored, LightGBM and the extra trees are fitted again with the evaluation
    # rows too; the model logged is that one (3,000 rows), the accuracy logged is the scored one's.
    refitted = {"lightgbm", "extra_trees"}
    for run in children:
        if run.data.tags[TAG_CANDIDATE] in refitted:
            assert run.data.params["fit_rows"] == "3000"
            assert run.data.params["refit_on"] == "every row, the evaluation split included"
    # What the gate may score each on later: a refitted one only newer batches' rows.
    assert {run.data.tags[TAG_CANDIDATE]: run.data.tags[TAG_UNSEEN_ROWS] for run in children} == {
        name: UNSEEN_NEWER_BATCHES if name in refitted else UNSEEN_EVAL_SHARE
        for name in settings.train_candidates
    }

    # The champion, loaded back by URI, predicts raw strings ("Rawah", "C7745", even aliases).
    # On the job's evaluation rows it scores its logged accuracy exactly, or at least that when
    # it was refitted on those rows.
    with mlflow_uris(settings.mlflow_tracking_uri):
        model = mlflow.pyfunc.load_model("models:/forest-cover@champion")
    features, labels = eval_split(settings)
    predicted = model.predict(features)[contract.LABEL].to_numpy()
    if best.name in refitted:
        assert np.mean(predicted == labels) >= best.accuracy
    else:
        assert np.mean(predicted == labels) == pytest.approx(best.accuracy)
    raw = features.head(3).assign(wilderness_area=["Rawah", "Comanche Peak", "cache"])
    raw["soil_type"] = ["C7745", "7745", "C2702"]
    output = model.predict(raw)
    assert output[contract.LABEL].between(0, 6).all()
    assert set(output["cover_type_name"]) <= set(contract.CLASS_NAMES)


def test_too_little_data_skips_with_a_message(settings: Settings, dataset_path: Path) -> None:
    assert train(settings).message.startswith("0 curated rows")  # nothing ingested at all

    seed_samples(settings, course_rows(dataset_path, 120))
    result = train(settings.model_copy(update={"train_min_rows": 500}))
    assert result.status == "skipped"
    assert result.message == "120 curated rows, at least 500 needed (TRAIN_MIN_ROWS)"
    assert result.summary().startswith("training skipped: 120 curated rows")
    assert not (settings.forestops_home / "mlflow.db").exists()  # no run for a non-event
    assert read_latest_model(settings) is None


def test_a_single_class_skips_with_a_message(settings: Settings, dataset_path: Path) -> None:
    rows = course_rows(dataset_path, 3000)
    seed_samples(settings, rows[rows[contract.LABEL] == 1])
    result = train(settings.model_copy(update={"train_min_rows": 100}))
    assert result.status == "skipped"
    assert "hold 1 cover type; at least 2 are needed" in result.message


def test_registry_disabled_registers_nothing_and_the_best_run_serves(
    settings: Settings, dataset_path: Path
) -> None:
    settings = tiny(
        settings,
        mlflow_enable_model_registry=False,
        train_candidates=("logistic_regression", "lightgbm"),
    )
    seed_samples(settings, course_rows(dataset_path, 2000))

    result = train(settings)

    best = max(result.candidates, key=lambda c: c.accuracy)
    assert (result.decision, result.model_version) == ("unregistered", None)
    assert result.model_uri == f"runs:/{best.run_id}/model"
    assert result.champion_changed
    client = MlflowClient(settings.mlflow_tracking_uri)
    assert client.search_registered_models() == []
    serving = resolve_serving_model(settings, client)
    assert serving is not None and serving.run_id == best.run_id
    status = read_latest_model(settings)
    assert status is not None
    assert (status["version"], status["model_uri"]) == (None, result.model_uri)


def test_cli_train_reports_as_json(settings: Settings, dataset_path: Path) -> None:
    seed_samples(settings, course_rows(dataset_path, 50))
    outcome = CliRunner().invoke(app, ["train", "--json"])
    assert outcome.exit_code == 0, outcome.output
    payload = json.loads(outcome.stdout)
    assert payload["status"] == "skipped" and payload["rows"] == 50


def test_cli_train_names_an_unknown_candidate(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAIN_CANDIDATES", "lightgbm,xgboost")
    outcome = CliRunner().invoke(app, ["train"])
    assert outcome.exit_code == 1
    assert "training failed: unknown candidate(s) xgboost; known: " in outcome.stderr


def test_registry_disabled_the_serving_run_keeps_its_model_however_old(
    settings: Settings, dataset_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`forestops model prune` with MODEL_RETENTION_JOBS=1 on the embedded store, after a weaker
    second job: the first job's losing model is deleted (its files gone from disk), not the first
    job's winner, which still serves, nor anything of the newest job."""
    settings = tiny(
        settings,
        mlflow_enable_model_registry=False,
        train_candidates=("logistic_regression", "svc"),
    )
    seed_samples(settings, course_rows(dataset_path, 1500))
    first = train(settings)
    winner = next(c for c in first.candidates if c.name == first.best)
    loser = next(c for c in first.candidates if c.name != first.best)
    client = MlflowClient(settings.mlflow_tracking_uri)
    models = {c.run_id: _model_folder(client, c.run_id) for c in first.candidates}
    weak = train(tiny(settings, train_candidates=("logistic_regression",), logreg_max_rows=100))
    assert weak.candidates[0].accuracy < winner.accuracy
    assert all(folder.is_dir() for folder in models.values())  # 10 jobs kept by default

    shipped = f"{SHIPPED_LIBRARIES}/x86_64-glibc2.36-g4"  # as training ships a LightGBM winner's
    client.log_text(loser.run_id, "a library", f"{shipped}/forest.so")
    monkeypatch.setenv("MLFLOW_ENABLE_MODEL_REGISTRY", "false")
    monkeypatch.setenv("MODEL_RETENTION_JOBS", "1")
    outcome = CliRunner().invoke(app, ["model", "prune"])

    assert outcome.exit_code == 0, outcome.output
    assert outcome.stdout.strip() == "deleted 1 old candidate model(s)"
    assert not models[loser.run_id].exists()
    assert (models[winner.run_id] / "MLmodel").is_file()
    assert TAG_PRUNED in client.get_run(loser.run_id).data.tags
    assert client.list_artifacts(loser.run_id, SHIPPED_LIBRARIES) == []
    assert "confusion_matrix.png" in {item.path for item in client.list_artifacts(loser.run_id)}
    assert TAG_PRUNED not in client.get_run(weak.candidates[0].run_id).data.tags
    serving = resolve_serving_model(settings, client)
    assert serving is not None and serving.run_id == winner.run_id
    assert len(load_verified(settings, client, serving).predict(eval_split(settings)[0])) > 0


def test_a_failed_pruning_is_tagged_on_the_job_and_does_not_fail_it(
    settings: Settings, dataset_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replaced here, as a tracking server refusing the deletion (a 403) cannot be staged on the
    embedded store: the job still trains and publishes, and its run says why nothing was deleted."""

    def refused(*args: object) -> int:
        raise PermissionError("the trainer may not delete here")

    monkeypatch.setattr(train_module, "prune_candidate_models", refused)
    settings = tiny(settings, train_candidates=("logistic_regression",))
    seed_samples(settings, course_rows(dataset_path, 1500))

    result = train(settings)

    assert (result.status, result.decision) == ("trained", "promoted")
    tags = MlflowClient(settings.mlflow_tracking_uri).get_run(str(result.run_id)).data.tags
    assert tags[TAG_PRUNED_MODELS] == "failed: PermissionError: the trainer may not delete here"


def _model_folder(client: MlflowClient, run_id: str) -> Path:
    (model,) = logged_models(client, client.get_run(run_id))
    return Path(model.artifact_location.removeprefix("file://"))
