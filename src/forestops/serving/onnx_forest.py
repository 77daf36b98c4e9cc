"""LightGBM champions compiled to ONNX and run by ONNX Runtime, verified before they serve.

Why: on a batch request the booster is two thirds of the service's CPU (benchmarks/RESULTS.md,
## Inference). ONNX Runtime's tree-ensemble kernel walks the same trees about twice as fast on one
thread and releases the GIL while it does, so parallel slices of a batch really run in parallel.

Why verified: ONNX tree ensembles compare float32 features with float32 thresholds where LightGBM
compares float64, so a row within float32 rounding of a split can take the other branch (measured
on a 322-tree champion: 1 label in 5,000 to 10,000 differs). The compiled forest therefore only
replaces the booster after it gives the booster's label on at least `INFERENCE_ONNX_MIN_AGREEMENT`
of a seeded set of valid records spread across the contract's ranges; otherwise the booster keeps
serving and the holder logs why. `INFERENCE_RUNTIME=native` turns all of this off.

Why a child process: onnxmltools converts in pure Python, seconds for a few hundred trees and about
a minute for a 4,500-tree model (FIELD_NOTES). Under the serving process's GIL that would stall every
request, so `python -m forestops.serving.onnx_forest` converts and the result is cached beside the
model in the local model cache: once per model, and a restart reuses it.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from forestops import contract

if TYPE_CHECKING:
    from lightgbm import Booster

    from forestops.serving.predictor import Predict

ONNX_FILE = "forest.onnx"
_INPUT, _OUTPUT = "features", "probabilities"
_OPSET = 15  # the newest default-domain opset onnxmltools' LightGBM converter supports


class CompileCancelled(Exception):
    """The holder stopped while a conversion ran; the child was killed."""


class ForestCompiler:
    """Runs conversions in child processes, one at a time, and kills the running one on `cancel`."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._child: subprocess.Popen[bytes] | None = None
        self._cancelled = threading.Event()
        self._lock = threading.Lock()

    def compile(self, booster: Booster, target: Path) -> Path:
        """`target` holding the ONNX form of `booster` (kept if it exists; written atomically)."""
        if target.is_file():
            return target
        with self._lock, tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            source, partial = Path(scratch) / "booster.txt", Path(scratch) / ONNX_FILE
            booster.save_model(str(source))
            command = [sys.executable, "-m", __name__, str(source), str(partial)]
            if self._cancelled.is_set():
                raise CompileCancelled("the model holder stopped")
            self._child = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            try:
                _, errors = self._child.communicate(timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                self._child.kill()
                self._child.wait()
                raise TimeoutError(f"ONNX conversion took over {self.timeout_s:g} s") from None
            finally:
                returncode, self._child = self._child.returncode, None
            if self._cancelled.is_set():
                raise CompileCancelled("the model holder stopped")
            if returncode < 0:
                raise RuntimeError(f"ONNX conversion killed by signal {-returncode}")
            if returncode != 0:
                tail = errors.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise RuntimeError(f"ONNX conversion exited {returncode}: {tail[0]}")
            partial.replace(target)
        return target

    def cancel(self) -> None:
        self._cancelled.set()
        child = self._child
        if child is not None:
            child.kill()


def load_forest(path: Path, encode: Predict) -> Predict:
    """The serving predictor over the ONNX forest at `path`: encode, cast to float32, run.

    One intra-op thread per call, like the booster path: the service splits batches itself.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # the converter's declared label shape draws a warning per run
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def predict(numeric: np.ndarray, area: np.ndarray, soil: np.ndarray) -> np.ndarray:
        features = encode(numeric, area, soil).astype(np.float32)
        (probabilities,) = session.run([_OUTPUT], {_INPUT: features})
        return np.asarray(probabilities, dtype=np.float64)

    return predict


def label_agreement(reference: Predict, candidate: Predict, rows: int, seed: int = 0) -> float:
    """Share of `rows` random valid records on which both predictors give the same class.

    Also refuses (ValueError) a candidate whose probabilities are not finite or do not sum to one.
    """
    arrays = random_records(rows, seed)
    expected, answered = reference(*arrays), candidate(*arrays)
    if answered.shape != expected.shape:
        raise ValueError(f"answers have shape {answered.shape}, expected {expected.shape}")
    if not np.isfinite(answered).all() or not np.allclose(answered.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("probabilities are not finite or do not sum to 1")
    return float((expected.argmax(axis=1) == answered.argmax(axis=1)).mean())


def random_records(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Valid records drawn uniformly over the contract's integer ranges and category codes."""
    rng = np.random.default_rng(seed)
    low = np.array([f.minimum for f in contract.NUMERIC_FEATURES])
    high = np.array([f.maximum for f in contract.NUMERIC_FEATURES])
    numeric = rng.integers(low, high + 1, size=(rows, len(low))).astype(np.float64)
    area = rng.integers(0, len(contract.WILDERNESS_AREAS), rows)
    soil = rng.integers(0, len(contract.SOIL_TYPES), rows)
    return numeric, area, soil


def _convert(source: Path, target: Path) -> None:
    """The child's work: a LightGBM model file in, an ONNX classifier (probabilities only) out."""
    import lightgbm
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    booster = lightgbm.Booster(model_file=str(source))
    features = FloatTensorType([None, booster.num_feature()])
    onnx_model = onnxmltools.convert_lightgbm(
        booster, initial_types=[(_INPUT, features)], zipmap=False, target_opset=_OPSET
    )
    target.write_bytes(onnx_model.SerializeToString())


if __name__ == "__main__":
    _convert(Path(sys.argv[1]), Path(sys.argv[2]))
