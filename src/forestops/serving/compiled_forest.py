"""LightGBM champions compiled to native code, checked equal to the booster before they serve.

Why: on a batch request the booster is most of the service's CPU (benchmarks/RESULTS.md,
## Inference). `forest_codegen` writes the trees as C whose raw scores equal LightGBM's; the system
C compiler turns it into a shared library that runs them several times as fast on one thread, and
ctypes releases the GIL during the call, so parallel slices of a batch really run in parallel.

Why a child process: generating and compiling the C takes about 90 s of CPU for a 1,169-tree
champion (a few seconds for a small one). `python -m forestops.serving.compiled_forest` does it,
compiling the translation units in parallel, so the service's GIL never waits on it; the library
is cached beside the model in the local model cache under a name derived from the model text and
the generator's version, so a restart reuses it and a new generator never loads an old library.
On stop or timeout the child's whole process group (with the compilers) is killed.

Why checked although exact by construction: the library is a file on disk and the compiler a
program on PATH. Nothing serves it before `verified_forest` has seen it give the booster's
probabilities within `TOLERANCE`: on `VERIFICATION_ROWS` random valid records the first time (in
training for a shipped library, in the holder for one compiled here), on `SAMPLE_ROWS` at later
loads of a file already verified (a signed shipped library, a cached one with its verdict). One
rule for both places, so training never ships what a replica would refuse.

Loaded libraries are never unloaded: requests in flight may still be inside one when a new model
swaps in, and a few MB of code per model ever served is the price.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from forestops import contract
from forestops.modeling.lightgbm_text import UnsupportedModel
from forestops.modeling.package import random_records
from forestops.native import run_compiler
from forestops.serving.forest_codegen import CODEGEN_VERSION, ENTRY_POINT, forest_source

if TYPE_CHECKING:
    from forestops.serving.predictor import Predict

TOLERANCE = 1e-9  # largest probability difference from the booster that still counts as equal
# measured: -O0 2.2x slower code, -O2 compiles far longer for little more. No -march=native (as
# forestops.native's kernels have): a shipped library runs on every host of its platform key.
_OPTIMIZE = "-O1"
_UNIT_TEXT = 8_000_000  # most model-text characters per translation unit (~12 MB of C)
_BACKGROUND = "--background"
VERIFICATION_ROWS = 20_000  # a library's first check (~5 s of one-thread booster CPU, 1,200 trees)
SAMPLE_ROWS = 200  # a later load of a library that passed the first check


class CompileCancelled(Exception):
    """The holder stopped while a compilation ran; the child was killed."""


class ForestMismatch(ValueError):
    """The library loads and answers probabilities, but not the booster's."""


def library_name(model_text: str) -> str:
    digest = hashlib.sha256(f"{CODEGEN_VERSION}\n{model_text}".encode()).hexdigest()[:16]
    return f"forest-{digest}.so"


class ForestCompiler:
    """Runs compilations in child processes, one at a time, and kills the running one on `cancel`.

    `background`: the child and its compilers run at idle priority (SCHED_IDLE, else nice 19), with
    one compiler fewer than cores: a serving replica compiling its champion must not slow the
    requests that champion answers meanwhile (issue 16: the first minute after a promotion ran at
    0.6x the baseline's rows/s with one normal-priority compiler per core). The training job
    compiles in the foreground: the machine is its own.
    """

    def __init__(self, timeout_s: float, compiler: str = "cc", *, background: bool = False) -> None:
        self.timeout_s = timeout_s
        self.compiler = compiler
        self.background = background
        self._child: subprocess.Popen[bytes] | None = None
        self._cancelled = threading.Event()
        self._lock = threading.Lock()

    def compile(self, model_text: str, target: Path) -> Path:
        """`target` holding the compiled form of the model (kept if it exists; written atomically)."""
        if target.is_file():
            return target
        with self._lock, tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            source, partial = Path(scratch) / "model.txt", Path(scratch) / target.name
            source.write_text(model_text)
            command = [sys.executable, "-m", __name__, self.compiler, str(source), str(partial)]
            if self.background:
                command.append(_BACKGROUND)
            if self._cancelled.is_set():
                raise CompileCancelled("the model holder stopped")
            self._child = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
            )
            try:
                _, errors = self._child.communicate(timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(self._child)
                self._child.wait()
                raise TimeoutError(f"compilation took over {self.timeout_s:g} s") from None
            finally:
                returncode, self._child = self._child.returncode, None
            if self._cancelled.is_set():
                raise CompileCancelled("the model holder stopped")
            if returncode < 0:
                raise RuntimeError(f"compilation killed by signal {-returncode}")
            if returncode != 0:
                tail = errors.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise RuntimeError(f"compilation exited {returncode}: {tail[0]}")
            partial.replace(target)
        return target

    def cancel(self) -> None:
        self._cancelled.set()
        child = self._child
        if child is not None:
            _kill_group(child)


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    """Kill the child and the compilers it started (its own session); its waiter reaps it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)


def load_forest(path: Path, encode: Predict) -> Predict:
    """The serving predictor over the library at `path`: encode, raw scores in C, softmax."""
    library = ctypes.CDLL(str(path))
    try:
        version = library.forestops_forest_version()
        num_features = library.forestops_forest_num_features()
        num_classes = library.forestops_forest_num_classes()
        raw = getattr(library, ENTRY_POINT)
    except AttributeError as error:
        raise ValueError(f"{path.name} is not a forestops forest library") from error
    if version != CODEGEN_VERSION or num_classes != len(contract.CLASS_IDS):
        raise ValueError(f"{path.name}: generator {version}, {num_classes} classes")
    raw.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    raw.restype = ctypes.c_int

    def predict(numeric: np.ndarray, area: np.ndarray, soil: np.ndarray) -> np.ndarray:
        features = np.ascontiguousarray(encode(numeric, area, soil), dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != num_features:
            raise ValueError(
                f"features have shape {features.shape}, the forest reads {num_features}"
            )
        scores = np.zeros((len(features), num_classes))
        if raw(features.ctypes.data, len(features), scores.ctypes.data) != 0:
            raise MemoryError("the compiled forest could not allocate its work block")
        return softmax(scores)

    return predict


def softmax(scores: np.ndarray) -> np.ndarray:
    """LightGBM's multiclass transform (`Common::Softmax`), in place, row by row."""
    scores -= scores.max(axis=1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1, keepdims=True)
    return scores


def verified_forest(
    library: Path, encode: Predict, reference: Predict, rows: int
) -> tuple[Predict, float]:
    """The predictor over `library` and its largest probability difference from `reference` (the
    booster) over `rows` random valid records. ForestMismatch when that exceeds `TOLERANCE`;
    OSError or ValueError when the library does not load or does not answer probabilities."""
    predict = load_forest(library, encode)
    difference = max_difference(reference, predict, rows)
    if difference > TOLERANCE:
        raise ForestMismatch(
            f"probabilities differ from the booster's by up to {difference:.3g} "
            f"on {rows} records (tolerance {TOLERANCE:g})"
        )
    return predict, difference


def max_difference(reference: Predict, candidate: Predict, rows: int, seed: int = 0) -> float:
    """The largest probability difference between both predictors over `rows` random valid records.

    Refuses (ValueError) a candidate whose answers have the wrong shape, are not finite or do not
    sum to one.
    """
    arrays = random_records(rows, seed)
    expected, answered = reference(*arrays), candidate(*arrays)
    if answered.shape != expected.shape:
        raise ValueError(f"answers have shape {answered.shape}, expected {expected.shape}")
    if not np.isfinite(answered).all() or not np.allclose(answered.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("probabilities are not finite or do not sum to 1")
    return float(np.abs(expected - answered).max())


def build_library(
    model_text: str, target: Path, compiler: str = "cc", units: int = 0, jobs: int = 0
) -> None:
    """The child's work: C files beside `target`, compiled `jobs` at a time (default one per core),
    linked into one library at `target`.

    `units` translation units; by default one per core, more for a large model so that no compiler
    holds more than ~8 MB of model text at once (its memory grows with the unit: ~600 MB for 21 MB
    of C), and a 4,500-tree model compiles in the memory a 1,000-tree one needs.
    """
    cores = os.cpu_count() or 1
    source = forest_source(model_text, units or max(cores, -(-len(model_text) // _UNIT_TEXT)))
    files = [target.with_name(f"unit_{i}.c") for i in range(len(source.units))]
    files.append(target.with_name("main.c"))
    for file, text in zip(files, [*source.units, source.main], strict=True):
        file.write_text(text)
    objects = [file.with_suffix(".o") for file in files]
    with ThreadPoolExecutor(jobs or cores) as pool:
        list(
            pool.map(
                lambda pair: run_compiler(
                    compiler, [_OPTIMIZE, "-fPIC", "-c", str(pair[0]), "-o", str(pair[1])]
                ),
                zip(files, objects, strict=True),
            )
        )
    run_compiler(compiler, ["-shared", "-o", str(target), *map(str, objects), "-lm"])


def run_at_idle_priority() -> None:
    """SCHED_IDLE for this process and the compilers it starts (children inherit it): the kernel
    runs them only on CPU time no normal thread wants. Where that policy is refused, nice 19."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)


def _main(argv: list[str]) -> None:
    compiler, source, target, *flags = argv
    jobs = 0
    if _BACKGROUND in flags:
        run_at_idle_priority()
        jobs = max(1, (os.cpu_count() or 1) - 1)
    build_library(Path(source).read_text(), Path(target), compiler=compiler, jobs=jobs)


if __name__ == "__main__":
    try:
        _main(sys.argv[1:])
    except UnsupportedModel as error:
        sys.exit(f"unsupported model: {error}")
