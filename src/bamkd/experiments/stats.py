"""Summaries and significance tests over random restarts, for experiment reports.

The paper reports results over several random restarts and tests whether one variant beats
another with the Mann-Whitney U test (BAM_SPEC.md, "Evaluation"). This module holds those two
pieces: a per-variant summary of the seeds' scores, and the one-sided p-value from SciPy. Keeping
them here means every report computes medians, spreads and p-values the same way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from bamkd.errors import DataError

logger = logging.getLogger(__name__)

ALTERNATIVES: tuple[str, ...] = ("greater", "less", "two-sided")

EXACT_PERMUTATIONS = 100_000
"""Up to this many ways to split the pooled values into the two sides, a tied test is counted
exactly over all of them (10 seeds against 10 is 184,756 splits: the approximation takes over)."""


@dataclass(frozen=True)
class Summary:
    """Descriptive statistics of one variant's scores over seeds."""

    n: int
    """Number of values (seeds)."""
    median: float
    """Median; the paper's tables report medians over restarts."""
    mean: float
    """Arithmetic mean."""
    std: float
    """Sample standard deviation (ddof=1); 0.0 when there is a single value."""
    min: float
    """Smallest value."""
    max: float
    """Largest value."""


def _finite_floats(name: str, values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise DataError(f"{name} must be a flat sequence of numbers, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise DataError(f"{name} contains non-finite values: {array.tolist()}")
    return array


def summarize(values: Sequence[float]) -> Summary:
    """Summarise one variant's scores over seeds.

    Args:
        values: One score per seed.

    Returns:
        A ``Summary`` with n, median, mean, sample std (ddof=1, 0.0 for a single value), min, max.

    Raises:
        DataError: No values, or a NaN or infinite value (a diverged run must be looked at, not
            averaged away).
    """
    array = _finite_floats("values", values)
    if array.size == 0:
        raise DataError("cannot summarise an empty sequence of values")
    # ddof=1 is undefined for one value (numpy would warn and return NaN); a single seed has no
    # spread to report, so 0.0.
    std = float(np.std(array, ddof=1)) if array.size > 1 else 0.0
    return Summary(
        n=int(array.size),
        median=float(np.median(array)),
        mean=float(np.mean(array)),
        std=std,
        min=float(np.min(array)),
        max=float(np.max(array)),
    )


def mann_whitney(
    a: Sequence[float],
    b: Sequence[float],
    alternative: str = "greater",
) -> float | None:
    """P-value of the Mann-Whitney U test that ``a`` tends to be larger than ``b``.

    A thin wrapper around ``scipy.stats.mannwhitneyu``, as the paper uses to compare variants over
    random restarts. Small samples get an exact p-value even with ties: SciPy's default falls back
    to the normal approximation when two values tie, and dev scores tie often (two seeds with the
    same number of correct dev examples), where the approximation can report a p below anything
    the exact test can reach (2 vs 2 seeds: 0.11 against the exact floor 1/6). With ties and at
    most ``EXACT_PERMUTATIONS`` rank splits the p-value is counted over every split instead.

    The test is rank-based, so few seeds bound how small p can get: with 3 vs 3 seeds the smallest
    achievable one-sided p is 1 / C(6, 3) = 0.05, reached only when every value of ``a`` exceeds
    every value of ``b``. Use at least 4 seeds per side to be able to go below 0.05.

    Args:
        a: Scores of the variant tested to be better, one per seed.
        b: Scores of the variant it is compared with.
        alternative: "greater" (a > b, default), "less" (a < b) or "two-sided".

    Returns:
        The p-value, or None when either side has fewer than 2 values (the test says nothing
        useful there, and a report should show "n/a" rather than a number).

    Raises:
        ValueError: An unknown ``alternative`` (a programming error).
        DataError: Non-finite values.
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    first = _finite_floats("a", a)
    second = _finite_floats("b", b)
    if first.size < 2 or second.size < 2:
        logger.debug(
            "Mann-Whitney U skipped: %d vs %d values, at least 2 per side needed",
            first.size,
            second.size,
        )
        return None
    result = stats.mannwhitneyu(
        first, second, alternative=alternative, method=_method(first, second)
    )
    p_value = float(result.pvalue)
    # Finite inputs with at least 2 values per side always give a p-value; this guards that.
    assert not math.isnan(p_value), "scipy returned NaN for finite inputs"
    return p_value


def _method(first: np.ndarray, second: np.ndarray) -> str | stats.PermutationMethod:
    pooled = np.concatenate([first, second])
    tied = np.unique(pooled).size < pooled.size
    splits = math.comb(pooled.size, first.size)
    if tied and splits <= EXACT_PERMUTATIONS:
        # n_resamples at least the number of splits makes SciPy enumerate them all (no sampling).
        return stats.PermutationMethod(n_resamples=splits)
    return "auto"


def smallest_p_value(n_a: int, n_b: int) -> float:
    """The smallest one-sided p-value the exact Mann-Whitney U test can give for these sizes.

    It is reached only when every value of one side exceeds every value of the other: one of the
    C(n_a + n_b, n_a) equally likely rank splits under the null hypothesis. A report prints it
    beside its p-values so that a reader of "p = 0.05" with 3 seeds per side knows no result
    could have scored lower, and how many seeds a smaller p needs.
    """
    if n_a < 1 or n_b < 1:
        raise ValueError(f"both sides need at least one value, got {n_a} and {n_b}")
    return 1.0 / math.comb(n_a + n_b, n_a)
