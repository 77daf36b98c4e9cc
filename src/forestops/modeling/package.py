"""How a forestops model is packaged for MLflow: one pyfunc around one sklearn Pipeline.

Why a pyfunc and not the sklearn flavour: MLflow 3's sklearn flavour serialises with skops, which
rejects tree models (FIELD_NOTES), and the pyfunc lets the model answer in the contract's terms
(class id, class name, probabilities) for any caller of `mlflow.pyfunc.load_model`, with the
contract encoding inside, so raw course rows ("Rawah", "C7745") go straight in.
"""

from __future__ import annotations

import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema
from sklearn.pipeline import Pipeline

from forestops import contract
from forestops.modeling.features import ContractEncoder

if TYPE_CHECKING:
    from sklearn.ensemble._forest import ForestClassifier

PROBABILITY_COLUMNS = tuple(f"probability_{i}" for i in contract.CLASS_IDS)

SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            *(ColSpec("long", name) for name in contract.NUMERIC_NAMES),
            *(ColSpec("string", name) for name in contract.CATEGORICAL_NAMES),
        ]
    ),
    outputs=Schema(
        [
            ColSpec("long", contract.LABEL),
            ColSpec("string", "cover_type_name"),
            *(ColSpec("double", name) for name in PROBABILITY_COLUMNS),
        ]
    ),
)


class ForestCoverModel(PythonModel):
    """A fitted `Pipeline([("encode", ContractEncoder), ("model", estimator)])` behind pyfunc."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    @property
    def encoder(self) -> ContractEncoder:
        encoder: ContractEncoder = self.pipeline.steps[0][1]
        return encoder

    @property
    def estimator(self) -> Any:
        return self.pipeline.steps[-1][1]

    @property
    def tree_forest(self) -> ForestClassifier | None:
        """The estimator if it is a scikit-learn forest of classification trees (extra trees or
        a random forest): what serving asks tree by tree and TreeSHAP explains."""
        from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

        estimator = self.estimator
        return (
            estimator
            if isinstance(estimator, ExtraTreesClassifier | RandomForestClassifier)
            else None
        )

    def predict_proba_arrays(
        self, numeric: np.ndarray, area: np.ndarray, soil: np.ndarray
    ) -> np.ndarray:
        """Class probabilities (n, 7) for validated arrays, skipping all DataFrame work."""
        matrix = self.encoder.encode_arrays(numeric, area, soil)
        return _full_probabilities(self.estimator, self.estimator.predict_proba(matrix))

    # No type hints here: MLflow 3 would try to derive a schema from them and warn on every log;
    # the explicit SIGNATURE is the schema.
    def predict(self, context, model_input, params=None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        probabilities = _full_probabilities(self.estimator, self.pipeline.predict_proba(frame))
        return to_output_frame(probabilities)


def _full_probabilities(estimator: Any, probabilities: np.ndarray) -> np.ndarray:
    """Spread an estimator's probability columns over all 7 classes (a class absent in training: 0)."""
    classes = np.asarray(estimator.classes_, dtype=np.int64)
    if len(classes) == len(contract.CLASS_IDS):
        return probabilities
    full = np.zeros((probabilities.shape[0], len(contract.CLASS_IDS)))
    full[:, classes] = probabilities
    return full


def to_output_frame(probabilities: np.ndarray) -> pd.DataFrame:
    labels = probabilities.argmax(axis=1)
    out = pd.DataFrame(probabilities, columns=list(PROBABILITY_COLUMNS))
    out.insert(0, "cover_type_name", np.asarray(contract.CLASS_NAMES, dtype=object)[labels])
    out.insert(0, contract.LABEL, labels.astype(np.int64))
    return out


def pip_requirements() -> list[str]:
    """Pinned from the running environment: inference sees exactly what training used."""
    packages = ("mlflow", "scikit-learn", "lightgbm", "pandas", "numpy", "cloudpickle")
    return [f"{name}=={version(name)}" for name in packages]


def input_example() -> pd.DataFrame:
    """One valid record built from the contract's defaults."""
    row: dict[str, object] = {f.name: f.default for f in contract.NUMERIC_FEATURES}
    row["wilderness_area"] = contract.WILDERNESS_AREAS[0].code
    row["soil_type"] = "C7745"
    return pd.DataFrame([row])


def random_records(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Valid records drawn uniformly over the contract's integer ranges and category codes: what
    a compiled forest or explainer is checked against its booster on."""
    rng = np.random.default_rng(seed)
    low = np.array([f.minimum for f in contract.NUMERIC_FEATURES])
    high = np.array([f.maximum for f in contract.NUMERIC_FEATURES])
    numeric = rng.integers(low, high + 1, size=(rows, len(low))).astype(np.float64)
    area = rng.integers(0, len(contract.WILDERNESS_AREAS), rows)
    soil = rng.integers(0, len(contract.SOIL_TYPES), rows)
    return numeric, area, soil


# What unpickling a ForestCoverModel imports of forestops (package.py, the encoder, the contract):
# shipped inside the model as its `code` so it loads where forestops is not installed, from its
# own requirements alone. Nothing else of forestops is (the settings, the serving stack...).
MODEL_CODE = (
    "__init__.py",
    "contract.py",
    "modeling/__init__.py",
    "modeling/features.py",
    "modeling/package.py",
)


def log_forest_model(pipeline: Pipeline, name: str = "model", **kwargs: Any) -> ModelInfo:
    """Log a fitted pipeline as a pyfunc model in the active run (signature, example, pins,
    and the forestops modules it needs to load, so it is self-contained)."""
    package = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="forestops-model-code-") as staging:
        code = Path(staging) / "forestops"
        for relative in MODEL_CODE:
            (code / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(package / relative, code / relative)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=ForestCoverModel(pipeline),
            signature=SIGNATURE,
            input_example=input_example(),
            pip_requirements=pip_requirements(),
            code_paths=[str(code)],
            **kwargs,
        )
