"""The compiled forest shipped with the model: full speed from a champion's first request.

Why: compiling a champion's forest costs a minute of CPU for 1,169 trees and several for 2,400+.
Done by every serving replica after a promotion, it ran beside the requests it was meant to speed
up: the first minute after a promotion served 0.6x `mlflow models serve`'s batch rows/s (issue
16). The training job has the CPU, the model and the time: it compiles the best LightGBM
candidate's forest (the same generator, the same `compiled_forest.verified_forest` check against
the booster as serving, on 20,000 records) and logs the library as an artifact of that candidate's
run, under `compiled/<platform key>/`. A replica fetches it with the model, checks its signature
and a sample against the booster, and serves it from the first request; the booster never has to
answer. Training's check asks the booster with the job's `train_n_jobs` threads (serving's
predictor uses one): on a 3,000+-tree model the 20,000 one-thread predictions were the check's
longest part, and the probabilities do not depend on the thread count.

Why keyed by platform: a shared library runs only where the machine architecture and the C library
it was linked against are the same (the app and the Airflow images share one base image, so their
keys match); the generator's version is in the key too, so a new generator never loads an old
library. The compiler that built it is recorded, not matched: loading needs no compiler. A replica
on another platform finds no artifact for its key and compiles the forest itself, at idle priority
(`compiled_forest.ForestCompiler(background=True)`).

Why signed: loading a shared library runs its code, so the rule of `modeling.integrity` applies:
training authenticates the files (HMAC under `MODEL_SIGNING_KEY`) and tags the run
`forestops.compiled_forest.<platform key>` with the signature; a registry or bucket writer can
replace the files or the tag but cannot forge the MAC, and a replica loads nothing that fails it.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from forestops.config import Settings
from forestops.modeling.integrity import download, sign_files, signing_key, verify_files
from forestops.modeling.package import ForestCoverModel
from forestops.modeling.tracking import TAG_COMPILED_FOREST, ServingModelRef
from forestops.serving.compiled_forest import (
    SAMPLE_ROWS,
    VERIFICATION_ROWS,
    ForestCompiler,
    library_name,
    verified_forest,
)
from forestops.serving.forest_codegen import CODEGEN_VERSION
from forestops.serving.predictor import Predict, lightgbm_booster, make_predictor

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

ARTIFACT_ROOT = "compiled"
MANIFEST = "manifest.json"


def platform_key() -> str:
    """`<machine>-<libc><version>-g<generator version>`, e.g. `x86_64-glibc2.36-g4`."""
    libc, version = platform.libc_ver()
    return f"{platform.machine()}-{libc or 'libc'}{version}-g{CODEGEN_VERSION}"


def ship(settings: Settings, client: MlflowClient, run_id: str, model: ForestCoverModel) -> str:
    """Compile `model`'s forest, check it against the booster and log it, signed, to `run_id`.

    Returns what happened in one line (for the training log). A model without a LightGBM booster,
    a missing compiler or a library that differs from the booster ships nothing: serving then
    compiles for itself or keeps the booster, so training never fails for want of a library.
    """
    booster = lightgbm_booster(model)
    if booster is None:
        return f"no compiled forest: {type(model.estimator).__name__} is not a LightGBM model"
    model_text = booster.model_to_string()
    key = platform_key()
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder) / key
        directory.mkdir()
        library = directory / library_name(model_text)
        try:
            ForestCompiler(
                settings.inference_compile_timeout_s, settings.inference_compiler
            ).compile(model_text, library)
            reference, _ = make_predictor(
                model, compiler=settings.inference_compiler, threads=settings.train_n_jobs
            )
            _, difference = verified_forest(
                library, model.encoder.encode_arrays, reference, VERIFICATION_ROWS
            )
        except Exception as error:
            return f"no compiled forest: {type(error).__name__}: {error}"
        manifest = {
            "platform": key,
            "library": library.name,
            "compiler": _compiler_version(settings.inference_compiler),
            "codegen_version": CODEGEN_VERSION,
            "max_difference": difference,
            "verification_rows": VERIFICATION_ROWS,
        }
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        _, signature = sign_files(signing_key(settings), directory)
        client.log_artifacts(run_id, str(directory), f"{ARTIFACT_ROOT}/{key}")
        client.set_tag(run_id, TAG_COMPILED_FOREST + key, signature)
        size_mb = library.stat().st_size / 1e6
    return f"compiled forest shipped for {key} ({size_mb:.1f} MB, the booster's answers)"


def fetch(settings: Settings, ref: ServingModelRef, destination: Path) -> Path | None:
    """This platform's shipped library of `ref` downloaded into `destination/<key>/`, or None when
    training shipped none for this platform (serving then compiles it). Not yet verified:
    `open_shipped` checks it at every load, the disk cache included."""
    key = platform_key()
    if TAG_COMPILED_FOREST + key not in ref.tags:
        return None
    target = destination / key
    shutil.rmtree(target, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=destination.parent) as scratch:
        local = download(settings, f"runs:/{ref.run_id}/{ARTIFACT_ROOT}/{key}", Path(scratch))
        destination.mkdir(parents=True, exist_ok=True)
        local.rename(target)
    return target


def open_shipped(
    key: bytes, directory: Path, ref: ServingModelRef, model: ForestCoverModel, reference: Predict
) -> Predict:
    """The predictor over the shipped library in `directory`, once its signature holds (checked
    before anything is loaded) and it gives `reference`'s answers on a sample (training checked
    the full `VERIFICATION_ROWS` before it signed); ValueError or ModelIntegrityError saying why
    not."""
    verify_files(key, directory, ref.tags.get(TAG_COMPILED_FOREST + directory.name))
    manifest = json.loads((directory / MANIFEST).read_text())
    library = directory / str(manifest["library"])
    if library.parent != directory or not library.is_file():
        raise ValueError(f"the manifest names no library of its own: {manifest['library']!r}")
    predict, _ = verified_forest(library, model.encoder.encode_arrays, reference, SAMPLE_ROWS)
    return predict


def _compiler_version(compiler: str) -> str:
    try:
        done = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30)
    except OSError as error:
        return f"unknown ({error})"
    return (done.stdout.splitlines() or ["unknown"])[0]
