"""Turn downloaded model files into a `ServedModel`, or refuse them saying why.

Nothing is unpickled before its files pass `modeling.integrity`'s check (the training job's HMAC
over every file, recomputed from the local copy, the disk cache included): a version that fails is
refused without being deserialised. A candidate must then load as a forestops pyfunc and pass the
smoke test. A LightGBM model whose training shipped a compiled forest for this platform
(`shipped_forest`) serves that library from its first request once the library's own signature
holds and it gives the booster's answers; otherwise the booster serves until `acceleration`
compiles one here.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from forestops.config import Settings
from forestops.modeling.explain import explainer_for
from forestops.modeling.integrity import ModelIntegrityError, verify_files
from forestops.modeling.package import ForestCoverModel
from forestops.modeling.tracking import MODEL_ARTIFACT, TAG_SIGNATURE, ServingModelRef
from forestops.serving.predictor import make_predictor
from forestops.serving.served_model import ModelRefused, ServedModel, short
from forestops.serving.shipped_forest import ARTIFACT_ROOT, open_shipped, platform_key
from forestops.serving.smoke import smoke_test


def open_model(settings: Settings, key: bytes, path: Path, ref: ServingModelRef) -> ServedModel:
    """The model in the cache folder `path`, checked and ready to answer; ModelRefused if not."""
    import mlflow

    try:
        verify_files(key, path / MODEL_ARTIFACT, ref.tags.get(TAG_SIGNATURE))
    except ModelIntegrityError as error:
        raise ModelRefused(f"failed its integrity check, so it was not loaded: {error}") from error
    try:
        pyfunc = mlflow.pyfunc.load_model(str(path / MODEL_ARTIFACT))
        model = pyfunc.unwrap_python_model()
    except Exception as error:
        raise ModelRefused(f"does not load: {short(error)}") from error
    if not isinstance(model, ForestCoverModel):
        raise ModelRefused(f"is a {type(model).__name__}, not a ForestCoverModel")
    single_threaded(model)
    predict, runtime = make_predictor(model, compiler=settings.inference_compiler)
    smoke_test(model, predict)
    explainer, unexplainable = explainer_for(model, settings.inference_compiler)
    served = ServedModel(
        model=model,
        predict=predict,
        ref=ref,
        model_name=settings.model_name,
        path=path,
        runtime=runtime,
        explainer=explainer,
        unexplainable=unexplainable,
    )
    shipped = path / ARTIFACT_ROOT / platform_key()
    if settings.inference_runtime == "auto" and runtime == "lightgbm" and shipped.is_dir():
        return _with_shipped_forest(key, served, shipped)
    return served


def _with_shipped_forest(key: bytes, served: ServedModel, shipped: Path) -> ServedModel:
    """`served` answering through the library training shipped, or through the booster with a
    note saying why the library was refused (it is then compiled here, as if none was shipped)."""
    try:
        predict = open_shipped(key, shipped, served.ref, served.model, served.predict)
        smoke_test(served.model, predict)
    except (ModelIntegrityError, ModelRefused, OSError, ValueError) as error:
        note = f"the shipped compiled forest was refused: {short(error)}"
        return replace(served, runtime_note=note)
    return replace(served, predict=predict, runtime="compiled")


def single_threaded(model: ForestCoverModel) -> None:
    """Make every model call use one thread; the service parallelises across calls instead.

    A LightGBM model trained with n_jobs=2 predicts one row with two OpenMP threads: on two busy
    cores the barrier waits for a descheduled thread (measured here: 12 ms instead of 0.2 ms
    for one row; FIELD_NOTES saw the same p99 blow-ups). Results do not depend on thread count.
    """
    estimator = model.estimator
    keys = [k for k in estimator.get_params() if k == "n_jobs" or k.endswith("__n_jobs")]
    if keys:
        estimator.set_params(**dict.fromkeys(keys, 1))
