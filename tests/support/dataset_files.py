"""Small course-format data set files cut from the shared data set, for tests that go through
FORESTOPS_DATASET (the whole file would cost seconds per test to parse)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def course_csv(dataset: Path, target: Path, rows: int) -> Path:
    """The first `rows` rows of `dataset`, written as a course CSV at `target`."""
    pd.read_csv(dataset, nrows=rows).to_csv(target, index=False)
    return target
