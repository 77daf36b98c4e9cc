"""Why a model answered what it did, in the contract's twelve features, exactly.

What is exact: TreeSHAP as LightGBM computes it (`Booster.predict(..., pred_contrib=True)`):
for every row and class, one contribution per model input column plus a base value (the model's
expected raw score), summing to the raw score (the class's softmax logit). `treeshap` computes
the same numbers in a compiled kernel an order of magnitude sooner, checked against
`pred_contrib` before it is used; without it, `pred_contrib` itself answers. Those columns are the
`ContractEncoder`'s: the ten contract numbers, the engineered Covertype features, and one code
column per category. Each column's contribution is handed to the contract features it is
computed from (`ContractEncoder.column_sources`): a raw number or a category code to itself,
`aspect_sin`/`aspect_cos` wholly to aspect, and a column computed from several features
(`hillshade_sum`, `hydrology_plus_fire`, ...) in equal shares to each of them. The split moves
no contribution in or out, so base + the twelve contributions = the raw score (to float rounding,
~1e-12); the equal split of a shared column is a convention, the rest is TreeSHAP itself.

A forest of scikit-learn classification trees (the extra trees that win on a course group's
small data, a random forest) is explained the same way by the same kernel, in its own units: its
answer is the average of its trees' class fractions, so base + contributions = the class's
probability, not a logit. Nothing in scikit-learn computes them to compare with; the kernel is
held to additivity against `predict_proba` (`treeshap.checked_forest`) and tested against Shapley
values by enumeration. Such a forest over MAX_FOREST_NODES nodes is refused: its layout would
hold ~90 bytes per node in every replica that explains.

What is refused: models without exact tree contributions (logistic regression, SVC; the `shap`
library, which would estimate them, is not a dependency), forests over MAX_FOREST_NODES, and
two-class LightGBM models (their one raw score does not explain each class).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from forestops import contract
from forestops.modeling import treeshap
from forestops.modeling.features import frame_to_arrays
from forestops.modeling.lightgbm_text import UnsupportedModel
from forestops.modeling.package import input_example, random_records
from forestops.modeling.treeshap import TreeShap

if TYPE_CHECKING:
    from lightgbm import Booster

    from forestops.modeling.package import ForestCoverModel

METHOD = (
    "TreeSHAP as LightGBM computes it (Booster.predict pred_contrib, or forestops' compiled kernel "
    "checked equal to it) over the model's input columns; for a forest of trees (extra trees, "
    "random forest) the same path-dependent TreeSHAP by the compiled kernel, on the averaged class "
    "probabilities; an engineered column's contribution is split equally among the contract "
    "features it is computed from"
)
CHECK_ROWS = 8  # random records beside the input example the kernel must answer as LightGBM does
# Kernel steps a caller may spend without a thread hop: one record's class on the full-data
# champion is ~600k (3.6 ms of one core, ~2.3 over two), a record of a 1.2M-node forest far more.
BRIEF_WORK = 1_000_000
MAX_FOREST_NODES = 2_000_000  # ~180 MB of kernel layout; extra trees on 40k rows have ~1.5M
log = logging.getLogger(__name__)


# A forest's record costs in proportion to its nodes (~85 ms for every class on 100 extra trees of
# 30k rows, 1.2M nodes) against a few ms for the boosting: a summary over many records explains
# as many records of a forest as this many nodes x records allow (100 of that forest, ~8.5 s).
FOREST_NODE_RECORDS = 120_000_000


class NotExplainable(ValueError):
    """The model has no exact per-feature contributions; the message says why."""


@dataclass(frozen=True)
class Explanation:
    """Contributions of `n` records to each class the model knows, in raw-score units.

    `classes[k]` is the contract class id of position k; `contributions[i, k, f]` is feature
    `contract.FEATURE_NAMES[f]`'s share of record i's raw score for that class.
    """

    classes: np.ndarray  # (K,)
    base: np.ndarray  # (n, K)
    contributions: np.ndarray  # (n, K, 12)

    @property
    def raw_scores(self) -> np.ndarray:
        return np.asarray(self.base + self.contributions.sum(axis=2))

    def position(self, class_id: int) -> int:
        return int(np.searchsorted(self.classes, class_id))


def shares(sources: list[tuple[str, ...]]) -> np.ndarray:
    """(model columns, contract features): how much of each column's contribution each feature
    gets (1 for its only source, 1/m for each of m sources)."""
    index = {name: i for i, name in enumerate(contract.FEATURE_NAMES)}
    matrix = np.zeros((len(sources), len(index)))
    for column, names in enumerate(sources):
        for name in names:
            matrix[column, index[name]] = 1.0 / len(names)
    return matrix


class Explainer:
    """Explains one fitted forestops model; raises NotExplainable when it cannot."""

    def __init__(self, model: ForestCoverModel, compiler: str = "cc") -> None:
        from lightgbm import LGBMClassifier

        estimator: Any = model.estimator
        self.kind = kind = _describe(estimator)
        self.booster: Booster | None = None
        self.forest = model.tree_forest
        self.nodes = 0  # a forest's, which its explanations cost in proportion to
        if isinstance(estimator, LGBMClassifier):
            self.booster = estimator.booster_
            columns = self.booster.num_feature()
        elif self.forest is not None:
            self.nodes = nodes = sum(tree.tree_.node_count for tree in estimator.estimators_)
            if nodes > MAX_FOREST_NODES:
                raise NotExplainable(
                    f"the model is a {kind} of {nodes:,} nodes, more than the {MAX_FOREST_NODES:,} "
                    "this service lays out to explain"
                )
            try:
                treeshap.kernel(compiler)  # no pred_contrib to fall back on
            except treeshap.KernelUnavailable as error:
                raise NotExplainable(
                    f"the {kind}'s explanations need a C compiler: {error}"
                ) from None
            columns = estimator.n_features_in_
        else:
            raise NotExplainable(
                f"the model is a {kind}: exact per-feature contributions exist here only for "
                "LightGBM models (TreeSHAP, computed by LightGBM itself) and forests of trees"
            )
        self.classes = np.asarray(estimator.classes_, dtype=np.int64)
        if self.booster is not None and len(self.classes) < 3:
            raise NotExplainable(
                f"the model knows {len(self.classes)} classes: a two-class LightGBM raw score "
                "does not explain each class"
            )
        self.encode = model.encoder.encode_arrays
        self.shares = shares(model.encoder.column_sources())
        if self.shares.shape[0] != columns:
            raise NotExplainable(
                f"the model reads {columns} columns, the encoder writes {self.shares.shape[0]}"
            )
        self.compiler = compiler
        self._fast: TreeShap | Literal[False] | None = False  # False: not built yet
        self.refusal: str | None = None  # why a forest's kernel failed (nothing else explains it)
        self._building = threading.Lock()
        self._starting = threading.Lock()
        self.warmup: threading.Thread | None = None  # building the kernel for `wait=False`

    @property
    def fast(self) -> TreeShap | None:
        """The compiled kernel over this model, built on first use (waiting for it), or None where
        it cannot be (no compiler, a model it does not lay out, an answer unlike
        `pred_contrib`'s)."""
        with self._building:
            if self._fast is False:
                if self.forest is not None:  # nothing else explains it: a failure is the answer
                    try:
                        self._fast = treeshap.checked_forest(
                            self.forest, self._check_rows(), self.compiler
                        )
                    except (treeshap.KernelUnavailable, UnsupportedModel, MemoryError) as error:
                        log.error("the %s cannot be explained: %s", self.kind, error)
                        self.refusal = f"the {self.kind}'s TreeSHAP kernel failed: {error}"
                        self._fast = None
                    return self._fast
                assert self.booster is not None
                try:
                    self._fast = treeshap.checked(self.booster, self._check_rows(), self.compiler)
                except (treeshap.KernelUnavailable, UnsupportedModel) as error:
                    log.warning("explanations stay on LightGBM's pred_contrib: %s", error)
                    self._fast = None
            return self._fast

    @property
    def answers_at_once(self) -> bool:
        """Whether `explain(wait=False)` answers without first building a kernel: a booster
        always does (LightGBM's pred_contrib until its kernel is built), a forest once its kernel
        is built and checked (until then `verify` builds it, or says why it cannot)."""
        return self.forest is None or isinstance(self._fast, TreeShap)

    def verify(self) -> None:
        """Build a forest's kernel now, waiting for it, and raise NotExplainable if it failed; a
        booster's explanations cannot fail this way. For a caller that must refuse before it
        does any other work."""
        if self.forest is not None and self.fast is None:
            raise NotExplainable(str(self.refusal))

    @property
    def method(self) -> Literal["none", "lightgbm", "compiled"]:
        """What answers `explain(wait=False)` now (a forest waits for its kernel: only it can;
        `none` once that kernel has failed)."""
        if self.refusal is not None:
            return "none"
        return (
            "compiled"
            if self.forest is not None or isinstance(self._fast, TreeShap)
            else "lightgbm"
        )

    def affordable(self, rows: int) -> int:
        """How many of `rows` records a summary explains (training's global explanation, the
        monitor's reliance shift): all of them, or for a forest as many as its size allows
        (FOREST_NODE_RECORDS), at least one."""
        if self.forest is None:
            return rows
        return min(rows, max(1, FOREST_NODE_RECORDS // self.nodes))

    def brief(self, rows: int, only: np.ndarray | None) -> bool:
        """Whether `explain(wait=False)` of `rows` records (`only`: a class id each, or None for
        every class) is the built kernel's few milliseconds (BRIEF_WORK), so short that the hop to
        a worker thread (0.2-0.5 ms served, measured A/B) is worth saving: the service then runs
        it on the event loop, as it runs a small prediction. LightGBM's pred_contrib (tens of ms
        a record) and a large forest's kernel never are."""
        fast = self._fast
        if not isinstance(fast, TreeShap):
            return False
        positions = None if only is None else np.searchsorted(self.classes, only)
        return fast.work(rows, positions) <= BRIEF_WORK

    def prepare(self) -> None:
        """Start building the kernel on a thread of its own, once (`warmup`).

        Not a daemon thread: at interpreter exit a daemon thread still inside LightGBM's C++
        while its static objects are destroyed crashes the process."""
        with self._starting:
            if self.warmup is None:
                self.warmup = threading.Thread(target=lambda: self.fast, name="explainer")
                self.warmup.start()

    def _check_rows(self) -> np.ndarray:
        """The input example and a few random valid records, encoded."""
        example = frame_to_arrays(input_example())
        drawn = random_records(CHECK_ROWS, seed=0)
        return self._matrix(*(np.concatenate(pair) for pair in zip(example, drawn, strict=True)))

    def _matrix(self, numeric: np.ndarray, area: np.ndarray, soil: np.ndarray) -> np.ndarray:
        """The model's input columns; for a scikit-learn forest at the float32 values its trees
        compare (scikit-learn casts every input to float32)."""
        matrix = self.encode(numeric, area, soil)
        if self.forest is not None:
            return matrix.astype(np.float32).astype(np.float64)
        return matrix

    def explain(
        self,
        numeric: np.ndarray,
        area: np.ndarray,
        soil: np.ndarray,
        threads: int = 1,
        only: np.ndarray | None = None,
        wait: bool = True,
    ) -> Explanation:
        """Every class, or with `only` (a class id per record) just that class (the others NaN).

        `threads`: how many share the work (0: every core). `wait=False` (the service): until the
        kernel is built, LightGBM's `pred_contrib` answers and the kernel is built in the
        background. Laying out and checking a full-data champion (3,465 trees) takes seconds of
        CPU, and a thread waiting for the GIL meanwhile is held up to tens of milliseconds at a
        time; built at every swap it would slow a replica's predictions in the first seconds after
        each promotion even where nobody asks for explanations, so it waits for the first one.
        A scikit-learn forest always waits: nothing else explains it.
        """
        matrix = self._matrix(numeric, area, soil)
        rows, columns = matrix.shape
        positions = None if only is None else np.searchsorted(self.classes, only)
        fast = self.fast if wait or self.forest is not None else self._fast
        if fast is False:
            self.prepare()
        if not isinstance(fast, TreeShap):
            if self.booster is None:
                raise NotExplainable(str(self.refusal))
            raw = np.asarray(self.booster.predict(matrix, pred_contrib=True, num_threads=threads))
            per_class = raw.reshape(rows, len(self.classes), columns + 1)
            if positions is not None:
                per_class[np.arange(len(self.classes)) != positions[:, None]] = np.nan
        else:
            per_class = fast.contributions(matrix, positions, threads)
        return Explanation(
            classes=self.classes,
            base=per_class[:, :, columns],
            contributions=per_class[:, :, :columns] @ self.shares,
        )


def _describe(estimator: Any) -> str:
    """ "LogisticRegression", not "Pipeline"; "CalibratedClassifierCV(SVC)"; a forest by its own
    name (its `estimator` is the template of its trees, not a wrapped model)."""
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    inner = None if hasattr(final, "estimators_") else getattr(final, "estimator", None)
    name = type(final).__name__
    return f"{name}({type(inner).__name__})" if inner is not None else name


def explainer_for(
    model: ForestCoverModel, compiler: str = "cc"
) -> tuple[Explainer | None, str | None]:
    """The model's explainer (its kernel compiled with `compiler`), or None and why not."""
    try:
        return Explainer(model, compiler), None
    except NotExplainable as error:
        return None, str(error)
