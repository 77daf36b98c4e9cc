"""`?explain=` on the inference service: the served model's explainer, its limits, and the
explanation written into the JSON and CSV answers (`modeling.explain` computes it)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from fastapi import HTTPException, Query, status
from fastapi.exceptions import RequestValidationError

from forestops import contract
from forestops.modeling.explain import METHOD, Explainer, Explanation, NotExplainable
from forestops.serving.served_model import ServedModel

CSV_COLUMNS = ("base_value", *(f"contribution_{name}" for name in contract.FEATURE_NAMES))

QUERY_DESCRIPTION = f"""Explain each prediction (default `false`: nothing changes).
`true`: per record, `explanation` holds the predicted class's base value and each of the 12
contract features' contribution to that class's raw score (for LightGBM the softmax logit; for a
forest of trees, extra trees or random forest, the class's probability, the average of its
trees'); `all` adds `explanations`, the same for every class the model knows. base_value + the
sum of the contributions = raw_score, within 1e-6. Method: {METHOD}: `hillshade_sum` gives a third to each
hillshade, `hydrology_euclidean` half to each distance to water, `elevation_minus_*` half to
elevation and half to the distance it subtracts, the sums and differences of two horizontal
distances half to each, `aspect_sin`/`aspect_cos` all to aspect, the category code columns all to
their category. Refused with 422 (`loc` `["query", "explain"]`, the reason in `msg`) for a model
without exact contributions (anything but LightGBM and forests of trees); 413 beyond
`MAX_EXPLAIN_ROWS` records."""
ExplainQuery = Annotated[Literal["false", "true", "all"], Query(description=QUERY_DESCRIPTION)]
CsvExplainQuery = Annotated[
    Literal["false", "true"],
    Query(description="`true`: the columns base_value and contribution_<feature> (see /predict)"),
]


def _refusal(why: str | None, asked: str) -> RequestValidationError:
    msg = f"the served model cannot explain its predictions: {why}"
    return RequestValidationError(
        [{"type": "not_explainable", "loc": ["query", "explain"], "msg": msg, "input": asked}]
    )


def explainer(served: ServedModel, asked: str, rows: int, max_rows: int) -> Explainer:
    """The served model's explainer for `rows` records, or the 422 / 413 saying why not."""
    if served.explainer is None:
        raise _refusal(served.unexplainable, asked)
    if rows > max_rows:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"{rows} records to explain, more than MAX_EXPLAIN_ROWS={max_rows}",
        )
    return served.explainer


def verified(explain_with: Explainer, asked: str) -> None:
    """The 422 if `explain_with` cannot answer after all (a forest whose kernel failed when it
    was built, here if not before: seconds of work, so called off the event loop)."""
    try:
        explain_with.verify()
    except NotExplainable as error:
        raise _refusal(str(error), asked) from None


def _entry(explanation: Explanation, row: int, position: int) -> dict[str, Any]:
    class_id = int(explanation.classes[position])
    contributions = explanation.contributions[row, position]
    base = float(explanation.base[row, position])
    return {
        "cover_type": class_id,
        "cover_type_name": contract.CLASS_NAMES[class_id],
        "base_value": base,
        "raw_score": base + float(contributions.sum()),
        "contributions": dict(zip(contract.FEATURE_NAMES, contributions.tolist(), strict=True)),
    }


def explained(
    predictions: list[dict[str, Any]], explanation: Explanation, labels: np.ndarray, every: bool
) -> None:
    """Add `explanation` (and with `every`, `explanations`) to each prediction, in place."""
    for row, (prediction, label) in enumerate(zip(predictions, labels.tolist(), strict=True)):
        prediction["explanation"] = _entry(explanation, row, explanation.position(label))
        if every:
            prediction["explanations"] = [
                _entry(explanation, row, k) for k in range(len(explanation.classes))
            ]


def csv_cells(explanation: Explanation, labels: np.ndarray) -> list[list[str]]:
    """Per record, the CSV_COLUMNS cells of its predicted class (shortest exact decimals)."""
    positions = np.searchsorted(explanation.classes, labels)
    rows = np.arange(len(labels))
    base = explanation.base[rows, positions]
    contributions = explanation.contributions[rows, positions]
    return [
        [repr(b), *map(repr, cells)]
        for b, cells in zip(base.tolist(), contributions.tolist(), strict=True)
    ]
