"""The capture-recapture estimate of a batch's size, on samples drawn the way the data API draws."""

from __future__ import annotations

import numpy as np
import pytest

from forestops.pipeline.coverage import CaptureTally, estimate_batch_size


def test_two_samples_give_lincoln_petersen() -> None:
    # 100 and 100 rows, 10 of them in both: N = n1 n2 / m = 1000
    assert estimate_batch_size([100, 100], 190) == pytest.approx(1000, abs=1e-3)
    assert estimate_batch_size([60, 40], 88) == pytest.approx(60 * 40 / 12, abs=1e-3)


def test_no_estimate_until_a_row_is_seen_twice() -> None:
    assert estimate_batch_size([], 0) is None
    assert estimate_batch_size([30], 30) is None
    assert estimate_batch_size([30, 30, 30], 90) is None


def test_a_sample_holding_every_row_seen_means_the_batch_is_that_sample() -> None:
    assert estimate_batch_size([300, 300, 120], 300) == 300


def test_impossible_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot hold more than 20 distinct"):
        estimate_batch_size([30, 10], 20)


@pytest.mark.parametrize("size", [300, 3_000, 30_000])
def test_a_harvest_length_of_samples_pins_the_size_and_coverage_down(size: int) -> None:
    """40 samples of a tenth each, like a harvest of the data API's batches."""
    rng = np.random.default_rng(size)
    tally = CaptureTally()
    for _ in range(40):
        tally.add(map(str, rng.choice(size, size // 10, replace=False)))
    estimate, coverage = tally.batch_size(), tally.coverage()
    assert estimate is not None and coverage is not None
    assert abs(estimate - size) <= 0.03 * size
    assert abs(coverage - tally.distinct / size) <= 0.03


def test_the_estimator_is_nearly_unbiased_where_harvests_stop() -> None:
    """Over many simulated harvests of a 300-row batch, ~40 samples of 30 rows each."""
    rng = np.random.default_rng(0)
    misses = []
    for _ in range(200):
        tally = CaptureTally()
        for _ in range(40):
            tally.add(map(str, rng.choice(300, 30, replace=False)))
        coverage = tally.coverage()
        assert coverage is not None
        misses.append(coverage - tally.distinct / 300)
    assert abs(float(np.mean(misses))) < 0.005
    assert max(abs(miss) for miss in misses) < 0.03


def test_the_tally_counts_new_rows_over_recent_samples() -> None:
    tally = CaptureTally()
    assert tally.add(["a", "b", "c", "d"]) == 4
    assert tally.new_share(2) is None  # fewer samples than the window
    assert tally.add(["a", "b", "e", "e"]) == 1  # a repeat inside one sample counts once
    assert tally.add(["a", "b", "c"]) == 0
    assert (tally.samples, tally.distinct) == (3, 5)
    assert tally.new_share(2) == pytest.approx(1 / 6)
    assert tally.new_share(3) == pytest.approx(5 / 10)
