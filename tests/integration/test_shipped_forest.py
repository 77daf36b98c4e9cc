"""The compiled forest ships with the model (issue 16): training compiles the best LightGBM
candidate and logs the library, signed, to its run; a replica fetches it with the model and serves
it from its first request. A library that fails its signature or its sample, or a platform training
shipped nothing for, falls back to compiling here, in the background at idle priority.

Real training on rows of the shared data set, a real MLflow store, the system C compiler; the only
stand-in is a fake compiler script where a test watches how compilers are started.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from forestops.config import Settings
from forestops.modeling.package import random_records
from forestops.modeling.tracking import TAG_COMPILED_FOREST
from forestops.pipeline.train import train
from forestops.serving.compiled_forest import TOLERANCE, ForestCompiler
from forestops.serving.holder import ModelHolder
from forestops.serving.predictor import make_predictor
from forestops.serving.shipped_forest import ARTIFACT_ROOT, MANIFEST, platform_key
from support.champion import read_rows, tiny_pipeline
from support.training_data import course_rows, seed_samples, tiny

pytestmark = pytest.mark.slow

LIGHTGBM = {"train_candidates": ("lightgbm",), "lightgbm_max_rounds": 15}


@pytest.fixture
def trained(settings: Settings, dataset_path: Path) -> Settings:
    """A store whose champion is a small LightGBM model trained (and shipped) by `train`."""
    seed_samples(settings, course_rows(dataset_path, 2000))
    trained = tiny(settings, **LIGHTGBM, inference_runtime="auto", model_poll_interval_s=0)
    result = train(trained)
    assert result.champion_changed
    return trained


def started(settings: Settings) -> ModelHolder:
    holder = ModelHolder(settings)
    holder.start()
    return holder


def champion_run(settings: Settings) -> str:
    client = MlflowClient(settings.mlflow_tracking_uri)
    run_id = client.get_model_version_by_alias(settings.model_name, settings.champion_alias).run_id
    assert run_id is not None
    return run_id


def test_training_ships_a_signed_library_for_this_platform(trained: Settings) -> None:
    client = MlflowClient(trained.mlflow_tracking_uri)
    run = client.get_run(champion_run(trained))
    key = platform_key()
    assert run.data.tags[TAG_COMPILED_FOREST + key].startswith("v1:")
    files = {a.path for a in client.list_artifacts(run.info.run_id, f"{ARTIFACT_ROOT}/{key}")}
    assert f"{ARTIFACT_ROOT}/{key}/{MANIFEST}" in files
    assert any(path.endswith(".so") for path in files)


def test_a_replica_serves_the_shipped_library_from_its_first_request(trained: Settings) -> None:
    holder = started(trained)
    try:
        served = holder.current
        assert served is not None
        assert (served.runtime, served.runtime_note) == ("compiled", None)
        assert not list(served.path.glob("forest-*.so"))  # nothing was compiled here
        numeric, area, soil = random_records(500, seed=7)
        booster, _ = make_predictor(served.model, compiler="cc")
        difference = np.abs(served.predict(numeric, area, soil) - booster(numeric, area, soil))
        assert difference.max() <= TOLERANCE
    finally:
        holder.stop()


def test_a_changed_library_is_refused_before_it_loads_and_is_compiled_here(
    trained: Settings,
) -> None:
    first = started(trained)
    assert first.current is not None
    (library,) = (first.current.path / ARTIFACT_ROOT / platform_key()).glob("*.so")
    first.stop()
    # The cache as an intruder left it: a changed file renamed over the library. (Rewriting it in
    # place would also reset the pages this process mapped and relocated when it loaded it, and
    # the process would jump to an unrelocated address when it runs the library's finalizer at
    # exit: a SIGSEGV after the test run's summary.)
    changed = library.with_name("changed.so")
    changed.write_bytes(library.read_bytes() + b"\0")
    changed.replace(library)

    again = started(trained)
    try:
        served = again.current
        assert served is not None
        assert served.runtime == "lightgbm"
        assert "the shipped compiled forest was refused: ModelIntegrityError" in str(
            served.runtime_note
        )
        _wait_compiled(again)
    finally:
        again.stop()


def test_a_platform_training_shipped_nothing_for_compiles_here(trained: Settings) -> None:
    client = MlflowClient(trained.mlflow_tracking_uri)
    client.delete_tag(champion_run(trained), TAG_COMPILED_FOREST + platform_key())

    holder = started(trained)
    try:
        assert holder.current is not None
        assert holder.current.runtime == "lightgbm"
        assert not (holder.current.path / ARTIFACT_ROOT).exists()
        _wait_compiled(holder)
        assert list(holder.current.path.glob("forest-*.so"))
    finally:
        holder.stop()


def test_training_without_the_option_ships_nothing(settings: Settings, dataset_path: Path) -> None:
    seed_samples(settings, course_rows(dataset_path, 2000))
    plain = tiny(settings, **LIGHTGBM, train_compile_forest=False)
    train(plain)
    tags = MlflowClient(plain.mlflow_tracking_uri).get_run(champion_run(plain)).data.tags
    assert not [name for name in tags if name.startswith(TAG_COMPILED_FOREST)]


def test_a_background_compilation_runs_at_idle_priority_with_fewer_compilers_than_cores(
    tmp_path: Path, dataset_path: Path
) -> None:
    log = tmp_path / "compilers.log"
    fake_cc = tmp_path / "fake-cc"
    fake_cc.write_text(
        f"#!{sys.executable}\n"
        "import os, sys, time\n"
        f"log = open({str(log)!r}, 'a')\n"
        "log.write(f'start {os.sched_getscheduler(0)} {os.getpid()} {time.monotonic()}\\n')\n"
        "log.flush(); time.sleep(0.3)\n"
        "log.write(f'end - {os.getpid()} {time.monotonic()}\\n')\n"
        "sys.exit(1)\n"
    )
    fake_cc.chmod(fake_cc.stat().st_mode | stat.S_IXUSR)
    booster = tiny_pipeline(read_rows(dataset_path, 300), 2).named_steps["model"].booster_
    model_text = booster.model_to_string()

    with pytest.raises(RuntimeError):
        ForestCompiler(60, str(fake_cc), background=True).compile(model_text, tmp_path / "f.so")

    events = [line.split() for line in log.read_text().splitlines()]
    assert {policy for kind, policy, *_ in events if kind == "start"} == {str(os.SCHED_IDLE)}
    running = most = 0
    for kind, *_ in sorted(events, key=lambda e: float(e[3])):
        running += 1 if kind == "start" else -1
        most = max(most, running)
    assert most == max(1, (os.cpu_count() or 1) - 1)


def _wait_compiled(holder: ModelHolder, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while holder.current is None or holder.current.runtime != "compiled":
        assert time.monotonic() < deadline, "the forest was not compiled here"
        time.sleep(0.1)
