"""How much of a source batch the samples taken so far cover, from how much they overlap.

The data API answers each call with a simple random sample of fixed size, drawn without
replacement from the current batch and independently of earlier calls. That is the
capture-recapture setting of model M_t (Darroch 1958; Otis et al. 1978): a batch of N rows, T
samples of known sizes n_1..n_T, r distinct rows seen in all. The maximum-likelihood estimate of
N solves

    1 - r/N = prod_t (1 - n_t/N)

(the chance that a row was never drawn, reckoned from the rows seen and from the draws). With two
samples it is Lincoln-Petersen's n_1 n_2 / m. The equation has one root above r as soon as some
row was drawn twice; with no overlap yet, N is unbounded and there is no estimate. Chao's
estimators are built for rows that are unequally likely to be drawn, which this sampler never
does: they would add variance and nothing else. Coverage is then r / N.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from scipy.optimize import brentq


def estimate_batch_size(sample_sizes: Sequence[int], distinct: int) -> float | None:
    """The M_t maximum-likelihood size of a batch that `sample_sizes` (each without repeats)
    drew `distinct` different rows from; None while no row has been drawn twice."""
    if distinct <= 0 or sum(sample_sizes) <= distinct:
        return None
    largest = max(sample_sizes)
    if largest > distinct:
        raise ValueError(f"a sample of {largest} rows cannot hold more than {distinct} distinct")
    if largest == distinct:  # one sample holds every row seen: the likelihood peaks at N = r
        return float(distinct)

    def excess(size: float) -> float:
        """log P(never drawn) reckoned from the draws minus the same from the rows seen: +inf
        just above r, positive up to the root, negative beyond it (tending to 0)."""
        drawn = sum(math.log1p(-n / size) for n in sample_sizes)
        return drawn - math.log1p(-distinct / size)

    low = distinct * (1 + 1e-12)
    high = 2.0 * distinct
    while excess(high) >= 0:
        high *= 2
    return float(brentq(excess, low, high, xtol=1e-6))


class CaptureTally:
    """The samples of one batch taken so far: which rows they held and how many were new."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._sizes: list[int] = []
        self._new: list[int] = []

    def add(self, keys: Iterable[str]) -> int:
        """Count one more sample (its rows' content hashes); how many of its rows were new."""
        sample = set(keys)
        new = len(sample - self._seen)
        self._seen |= sample
        self._sizes.append(len(sample))
        self._new.append(new)
        return new

    @property
    def samples(self) -> int:
        return len(self._sizes)

    @property
    def distinct(self) -> int:
        return len(self._seen)

    def new_share(self, window: int) -> float | None:
        """New rows over all rows of the last `window` samples; None before there are that many."""
        if len(self._sizes) < window:
            return None
        drawn = sum(self._sizes[-window:])
        return sum(self._new[-window:]) / drawn if drawn else 0.0

    def batch_size(self) -> float | None:
        return estimate_batch_size(self._sizes, self.distinct)

    def coverage(self) -> float | None:
        size = self.batch_size()
        return None if size is None else self.distinct / size
