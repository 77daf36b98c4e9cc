"""Why a model answered what it did, in the contract's twelve features, exactly.

What is exact: LightGBM computes TreeSHAP itself (`Booster.predict(..., pred_contrib=True)`):
for every row and class, one contribution per model input column plus a base value (the model's
expected raw score), summing to the raw score (the class's softmax logit). Those columns are the
`ContractEncoder`'s: the ten contract numbers, the engineered Covertype features, and one code
column per category. Each column's contribution is handed to the contract features it is
computed from (`ContractEncoder.column_sources`): a raw number or a category code to itself,
`aspect_sin`/`aspect_cos` wholly to aspect, and a column computed from several features
(`hillshade_sum`, `hydrology_plus_fire`, ...) in equal shares to each of them. The split moves
no contribution in or out, so base + the twelve contributions = the raw score (to float rounding,
~1e-12); the equal split of a shared column is a convention, the rest is TreeSHAP itself.

What is refused: models whose exact contributions LightGBM does not give (logistic regression,
SVC, random forest here; the `shap` library, which would estimate them, is not a dependency) and
two-class LightGBM models (their one raw score does not explain each class).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from forestops import contract
from forestops.modeling.features import frame_to_arrays
from forestops.modeling.package import input_example

if TYPE_CHECKING:
    from lightgbm import Booster

    from forestops.modeling.package import ForestCoverModel

METHOD = (
    "LightGBM TreeSHAP (Booster.predict pred_contrib) over the model's input columns; an "
    "engineered column's contribution is split equally among the contract features it is "
    "computed from"
)


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

    def __init__(self, model: ForestCoverModel) -> None:
        from lightgbm import LGBMClassifier

        estimator: Any = model.estimator
        kind = _describe(estimator)
        if not isinstance(estimator, LGBMClassifier):
            raise NotExplainable(
                f"the model is a {kind}: exact per-feature contributions exist here only for "
                "LightGBM models (TreeSHAP, computed by LightGBM itself)"
            )
        self.classes = np.asarray(estimator.classes_, dtype=np.int64)
        if len(self.classes) < 3:
            raise NotExplainable(
                f"the model knows {len(self.classes)} classes: a two-class LightGBM raw score "
                "does not explain each class"
            )
        self.booster: Booster = estimator.booster_
        self.encode = model.encoder.encode_arrays
        self.shares = shares(model.encoder.column_sources())
        if self.shares.shape[0] != self.booster.num_feature():
            raise NotExplainable(
                f"the booster reads {self.booster.num_feature()} columns, the encoder writes "
                f"{self.shares.shape[0]}"
            )
        self._class_boosters: list[Booster] | Literal[False] | None = False  # False: not built yet
        self._building = threading.Lock()

    @property
    def class_boosters(self) -> list[Booster] | None:
        """One booster per class, built on first use: cutting them from the model text takes
        seconds for a few thousand trees (9 s for 3,738 here), which a new champion must not
        wait for before it serves; the holder builds them in the background after the swap."""
        with self._building:
            if self._class_boosters is False:
                check = self.encode(*frame_to_arrays(input_example()))
                self._class_boosters = class_boosters(self.booster, check)
            return self._class_boosters

    def explain(
        self,
        numeric: np.ndarray,
        area: np.ndarray,
        soil: np.ndarray,
        threads: int = 1,
        only: np.ndarray | None = None,
    ) -> Explanation:
        """Every class, or with `only` (a class id per record) just that class (the others NaN).

        One thread by default: the service parallelises across requests (holder.py).
        """
        matrix = self.encode(numeric, area, soil)
        rows, columns = matrix.shape
        boosters = None if only is None else self.class_boosters
        if only is None or boosters is None:
            raw = np.asarray(self.booster.predict(matrix, pred_contrib=True, num_threads=threads))
            per_class = raw.reshape(rows, len(self.classes), columns + 1)
        else:
            per_class = np.full((rows, len(self.classes), columns + 1), np.nan)
            positions = np.searchsorted(self.classes, only)
            for position in np.unique(positions).tolist():
                chosen = positions == position
                per_class[chosen, position] = boosters[position].predict(
                    matrix[chosen], pred_contrib=True, num_threads=threads
                )
        return Explanation(
            classes=self.classes,
            base=per_class[:, :, columns],
            contributions=per_class[:, :, :columns] @ self.shares,
        )


def class_boosters(booster: Booster, check: np.ndarray) -> list[Booster] | None:
    """One booster per class holding only that class's trees, or None if they cannot be made.

    Why: TreeSHAP runs over every tree, and a multiclass model has one tree per class per round,
    so explaining only the predicted class through its own trees costs a seventh (measured: 14
    instead of 165 ms for one record of a 1,169-tree champion). TreeSHAP is computed tree by
    tree and summed, so a class's contributions from its own trees are exactly those LightGBM
    gives for that class; this is checked on `check` rows before they are used. The model text
    is cut up: trees are stored round by round (tree i belongs to class i mod K).
    """
    from lightgbm import Booster

    per_round = booster.num_model_per_iteration()
    text = booster.model_to_string()
    try:
        head, rest = text.split("\nTree=0\n", 1)
        trees, tail = rest.split("\nend of trees", 1)
        blocks = re.split(r"\n\nTree=\d+\n", trees)
        header = head
        for key, value in (
            ("num_class", "1"),
            ("num_tree_per_iteration", "1"),
            ("objective", "regression"),
        ):
            header = re.sub(rf"^{key}=.*$", f"{key}={value}", header, flags=re.MULTILINE)
        header = re.sub(r"^tree_sizes=.*\n", "", header, flags=re.MULTILINE)
        boosters = [
            Booster(
                model_str=header
                + "".join(f"\nTree={i}\n{b.strip()}\n" for i, b in enumerate(blocks[k::per_round]))
                + "\nend of trees"
                + tail
            )
            for k in range(per_round)
        ]
        expected = np.asarray(booster.predict(check, pred_contrib=True)).reshape(
            len(check), per_round, -1
        )
        for k, single in enumerate(boosters):
            if not np.array_equal(
                np.asarray(single.predict(check, pred_contrib=True)), expected[:, k]
            ):
                return None
    except Exception:  # an unexpected model text: the whole booster still explains, slower
        return None
    return boosters


def _describe(estimator: Any) -> str:
    """ "LogisticRegression", not "Pipeline"; "CalibratedClassifierCV(SVC)"."""
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    inner = getattr(final, "estimator", None)
    name = type(final).__name__
    return f"{name}({type(inner).__name__})" if inner is not None else name


def explainer_for(model: ForestCoverModel) -> tuple[Explainer | None, str | None]:
    """The model's explainer, or None and why not."""
    try:
        return Explainer(model), None
    except NotExplainable as error:
        return None, str(error)
