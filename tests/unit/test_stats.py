"""Seed summaries and the Mann-Whitney U p-value: hand cases and agreement with scipy."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence

import numpy as np
import pytest
from scipy import stats

from bamkd.experiments.stats import Summary, mann_whitney, smallest_p_value, summarize


def test_summarize_by_hand() -> None:
    # 1 2 3 4: median 2.5, mean 2.5, squared deviations 2.25+0.25+0.25+2.25 = 5,
    # sample variance 5/3.
    summary = summarize([3.0, 1.0, 4.0, 2.0])
    assert summary == Summary(
        n=4, median=2.5, mean=2.5, std=pytest.approx(math.sqrt(5 / 3)), min=1.0, max=4.0
    )


def test_summarize_matches_statistics_module() -> None:
    values = list(np.random.default_rng(3).normal(80, 2, size=7))
    summary = summarize(values)
    assert summary.n == 7
    assert summary.median == pytest.approx(statistics.median(values))
    assert summary.mean == pytest.approx(statistics.fmean(values))
    assert summary.std == pytest.approx(statistics.stdev(values))
    assert (summary.min, summary.max) == (min(values), max(values))


def test_single_value_has_zero_std() -> None:
    assert summarize([0.83]) == Summary(n=1, median=0.83, mean=0.83, std=0.0, min=0.83, max=0.83)


@pytest.mark.parametrize("values", [[], [0.5, float("nan")], [float("inf")]])
def test_summarize_rejects_empty_and_non_finite(values: list[float]) -> None:
    with pytest.raises(ValueError):
        summarize(values)


def test_three_vs_three_all_greater_is_p_005() -> None:
    # Every a above every b: U takes its maximum 9, reached by 1 of C(6, 3) = 20 equally likely
    # rank splits under H0, so the exact one-sided p is 1/20 = 0.05 — the smallest 3 vs 3 allows.
    assert mann_whitney([0.86, 0.87, 0.88], [0.80, 0.81, 0.82]) == pytest.approx(0.05, abs=1e-12)


def test_four_vs_four_all_greater_is_one_in_seventy() -> None:
    # C(8, 4) = 70 rank splits, one of which puts all of a on top.
    assert mann_whitney([5, 6, 7, 8], [1, 2, 3, 4]) == pytest.approx(1 / 70)


def test_all_smaller_gives_p_one_for_greater() -> None:
    assert mann_whitney([1, 2, 3], [4, 5, 6]) == pytest.approx(1.0)
    assert mann_whitney([1, 2, 3], [4, 5, 6], alternative="less") == pytest.approx(0.05)


def test_identical_samples_do_not_warn() -> None:
    p_value = mann_whitney([0.5, 0.5], [0.5, 0.5])
    assert p_value is not None
    assert 0.0 <= p_value <= 1.0


def _u_statistic(a: Sequence[float], b: Sequence[float]) -> float:
    # Pairs where a is above b, ties counting one half: the U of a, by definition.
    return sum(1.0 if x > y else 0.5 if x == y else 0.0 for x in a for y in b)


def _exact_p_by_enumeration(a: list[float], b: list[float], alternative: str) -> float:
    """The permutation p-value counted over every split of the pooled values into sizes
    len(a) and len(b): the exact Mann-Whitney test, ties included. Two-sided is twice the
    smaller one-sided p (capped at 1), the convention of SciPy's exact test."""
    if alternative == "two-sided":
        one_sided = min(_exact_p_by_enumeration(a, b, side) for side in ("greater", "less"))
        return min(1.0, 2 * one_sided)
    pooled = a + b
    observed = _u_statistic(a, b)
    hits = total = 0
    for chosen in itertools.combinations(range(len(pooled)), len(a)):
        rest = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        u = _u_statistic([pooled[i] for i in chosen], rest)
        total += 1
        hits += u >= observed - 1e-12 if alternative == "greater" else u <= observed + 1e-12
    return hits / total


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
@pytest.mark.parametrize("seed", range(4))
def test_tied_small_samples_get_the_exact_p(alternative: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Rounded to two decimals so the samples tie, as dev accuracies of several seeds do.
    a = [float(x) for x in np.round(rng.normal(0.84, 0.01, size=5), 2)]
    b = [float(x) for x in np.round(rng.normal(0.83, 0.01, size=6), 2)]
    assert len(set(a + b)) < len(a + b)
    expected = _exact_p_by_enumeration(a, b, alternative)
    assert mann_whitney(a, b, alternative=alternative) == pytest.approx(expected)


def test_a_tie_never_reports_below_the_exact_floor() -> None:
    # Two seeds of one model with the same dev score: SciPy's default (normal approximation)
    # gives 0.110 here, below 1/6, the smallest p 2 vs 2 seeds can reach.
    assert mann_whitney([0.854, 0.862], [0.842, 0.842]) == pytest.approx(1 / 6)
    assert stats.mannwhitneyu([0.854, 0.862], [0.842, 0.842], alternative="greater").pvalue < 1 / 6


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
@pytest.mark.parametrize("seed", range(3))
def test_untied_samples_match_scipy(alternative: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(0.84, 0.01, size=5)
    b = rng.normal(0.83, 0.01, size=6)
    expected = stats.mannwhitneyu(a, b, alternative=alternative).pvalue
    assert mann_whitney(list(a), list(b), alternative=alternative) == pytest.approx(expected)


@pytest.mark.parametrize(("a", "b"), [([0.9], [0.1, 0.2]), ([0.9, 0.8], [0.1]), ([], [])])
def test_too_few_values_gives_none(a: list[float], b: list[float]) -> None:
    assert mann_whitney(a, b) is None


def test_bad_alternative_raises() -> None:
    with pytest.raises(ValueError, match="alternative"):
        mann_whitney([1, 2], [3, 4], alternative="bigger")


def test_non_finite_raises() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        mann_whitney([1, float("nan")], [3, 4])


@pytest.mark.parametrize(("n_a", "n_b"), [(3, 3), (4, 4), (2, 5), (1, 3)])
def test_smallest_p_value_is_what_the_test_gives_when_one_side_is_all_above(
    n_a: int, n_b: int
) -> None:
    above = [10.0 + i for i in range(n_a)]
    below = [float(i) for i in range(n_b)]
    floor = smallest_p_value(n_a, n_b)
    assert floor == pytest.approx(1 / math.comb(n_a + n_b, n_a))
    if n_a >= 2:
        assert mann_whitney(above, below) == pytest.approx(floor)


def test_smallest_p_value_needs_values_on_both_sides() -> None:
    with pytest.raises(ValueError):
        smallest_p_value(0, 3)
