"""GLUE metrics: hand-computed cases, agreement with sklearn/scipy, degenerate inputs, scores."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn import metrics as skm

from bamkd.errors import ConfigError, DataError
from bamkd.metrics import (
    METRIC_NAMES,
    average_score,
    compute_metrics,
    evaluate_task_metrics,
    task_score,
)


@dataclass(frozen=True)
class Spec:
    """The TaskSpec attributes evaluate_task_metrics reads."""

    name: str
    metrics: tuple[str, ...]
    eval_splits: tuple[str, ...] = ("dev",)


# --- hand-computed values --------------------------------------------------------------------


def test_balanced_confusion_by_hand() -> None:
    # labels 1 1 1 1 0 0 0 0 / preds 1 1 1 0 1 0 0 0 -> TP=3 FN=1 FP=1 TN=3.
    # accuracy = 6/8 = 0.75; precision = recall = 3/4 so F1 = 0.75;
    # MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (9 - 1) / sqrt(4^4) = 8/16 = 0.5.
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    preds = np.array([1, 1, 1, 0, 1, 0, 0, 0])
    result = compute_metrics(("accuracy", "f1", "mcc"), preds, labels)
    assert result == pytest.approx({"accuracy": 0.75, "f1": 0.75, "mcc": 0.5})


def test_asymmetric_confusion_by_hand() -> None:
    # TP=2 FN=2 FP=1 TN=5 (n=10). accuracy = 7/10.
    # precision = 2/3, recall = 2/4, F1 = 2PR/(P+R) = (2/3)/(7/6) = 4/7.
    # MCC = (2*5 - 1*2) / sqrt((2+1)(2+2)(5+1)(5+2)) = 8 / sqrt(504).
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    preds = np.array([1, 1, 0, 0, 1, 0, 0, 0, 0, 0])
    result = compute_metrics(("accuracy", "f1", "mcc"), preds, labels)
    assert result["accuracy"] == pytest.approx(0.7)
    assert result["f1"] == pytest.approx(4 / 7)
    assert result["mcc"] == pytest.approx(8 / math.sqrt(504))


def test_f1_is_of_positive_class_one() -> None:
    # Same confusion as above but with the classes swapped: class 1 now has TP=5 FP=2 FN=1,
    # so F1 = 2*5 / (2*5 + 2 + 1) = 10/13, not the 4/7 of class 0.
    labels = 1 - np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    preds = 1 - np.array([1, 1, 0, 0, 1, 0, 0, 0, 0, 0])
    assert compute_metrics(("f1",), preds, labels)["f1"] == pytest.approx(10 / 13)


def test_pearson_and_spearman_by_hand() -> None:
    # x = 1 2 3, y = 2 4 7: deviations (-1, 0, 1) and (-7/3, -1/3, 8/3);
    # r = 5 / sqrt(2 * 114/9). The ranks agree exactly, so Spearman = 1.
    result = compute_metrics(("pearson", "spearman"), np.array([1.0, 2, 3]), np.array([2.0, 4, 7]))
    assert result["pearson"] == pytest.approx(5 / math.sqrt(2 * 114 / 9))
    assert result["spearman"] == pytest.approx(1.0)


def test_perfect_anticorrelation() -> None:
    preds = np.array([0.1, 0.2, 0.3, 0.4])
    result = compute_metrics(("pearson", "spearman"), preds, -3 * preds)
    assert result == pytest.approx({"pearson": -1.0, "spearman": -1.0})


def test_correlations_do_not_depend_on_scale() -> None:
    # STS-B predictions in [0, 1] (head output) or [0, 5] (GLUE units) score the same.
    rng = np.random.default_rng(0)
    labels = rng.uniform(0, 5, size=50)
    preds = labels / 5 + rng.normal(0, 0.1, size=50)
    scaled = compute_metrics(("pearson", "spearman"), preds * 5, labels)
    assert compute_metrics(("pearson", "spearman"), preds, labels) == pytest.approx(scaled)


def test_results_follow_requested_order_and_are_floats() -> None:
    result = compute_metrics(("mcc", "accuracy"), np.array([0, 1, 1]), np.array([0, 1, 0]))
    assert list(result) == ["mcc", "accuracy"]
    assert all(type(value) is float for value in result.values())


def test_float_labels_with_integral_values_are_class_indices() -> None:
    result = compute_metrics(("accuracy",), np.array([0, 1, 2]), np.array([0.0, 1.0, 1.0]))
    assert result["accuracy"] == pytest.approx(2 / 3)


# --- agreement with sklearn / scipy ----------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_classification_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=200)
    preds = np.where(rng.random(200) < 0.7, labels, 1 - labels)
    result = compute_metrics(("accuracy", "f1", "mcc"), preds, labels)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(labels, preds))
    assert result["f1"] == pytest.approx(skm.f1_score(labels, preds))
    assert result["mcc"] == pytest.approx(skm.matthews_corrcoef(labels, preds))


def test_multiclass_accuracy_and_mcc_match_sklearn() -> None:
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 3, size=300)
    preds = np.where(rng.random(300) < 0.6, labels, rng.integers(0, 3, size=300))
    result = compute_metrics(("accuracy", "mcc"), preds, labels)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(labels, preds))
    assert result["mcc"] == pytest.approx(skm.matthews_corrcoef(labels, preds))


@pytest.mark.parametrize("seed", range(5))
def test_regression_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.uniform(0, 5, size=100)
    preds = labels + rng.normal(0, 1.5, size=100)
    result = compute_metrics(("pearson", "spearman"), preds, labels)
    assert result["pearson"] == pytest.approx(stats.pearsonr(preds, labels)[0])
    assert result["spearman"] == pytest.approx(stats.spearmanr(preds, labels)[0])


@settings(max_examples=60, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=40),
)
def test_classification_metrics_stay_in_range(pairs: list[tuple[int, int]]) -> None:
    # Any binary input, including single-class and constant ones, gives finite values in range
    # and no warning (warnings are errors under pytest).
    labels = np.array([label for label, _ in pairs])
    preds = np.array([pred for _, pred in pairs])
    result = compute_metrics(("accuracy", "f1", "mcc"), preds, labels)
    assert 0.0 <= result["accuracy"] <= 1.0
    assert 0.0 <= result["f1"] <= 1.0
    assert -1.0 - 1e-12 <= result["mcc"] <= 1.0 + 1e-12
    assert result["accuracy"] == pytest.approx(float(np.mean(labels == preds)))


# --- degenerate inputs -----------------------------------------------------------------------


def test_constant_regression_prediction_scores_zero_without_warning() -> None:
    labels = np.array([0.5, 1.5, 4.0, 2.0])
    result = compute_metrics(("pearson", "spearman"), np.full(4, 2.5), labels)
    assert result == {"pearson": 0.0, "spearman": 0.0}


def test_constant_regression_labels_score_zero() -> None:
    result = compute_metrics(("pearson", "spearman"), np.array([1.0, 2, 3]), np.full(3, 3.0))
    assert result == {"pearson": 0.0, "spearman": 0.0}


def test_single_example_correlation_is_zero() -> None:
    assert compute_metrics(("pearson",), np.array([1.0]), np.array([2.0])) == {"pearson": 0.0}


def test_constant_class_prediction_has_zero_mcc() -> None:
    labels = np.array([0, 1, 1, 0, 1])
    assert compute_metrics(("mcc",), np.ones(5, dtype=int), labels)["mcc"] == 0.0


def test_single_class_everywhere_has_zero_mcc_and_full_accuracy() -> None:
    # Both arrays hold only class 1: sklearn would warn about the confusion matrix shape.
    ones = np.ones(4, dtype=int)
    result = compute_metrics(("accuracy", "mcc", "f1"), ones, ones)
    assert result == {"accuracy": 1.0, "mcc": 0.0, "f1": 1.0}


def test_no_positive_class_gives_zero_f1() -> None:
    zeros = np.zeros(4, dtype=int)
    assert compute_metrics(("f1",), zeros, zeros)["f1"] == 0.0


# --- invalid inputs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "error"),
    [((), ConfigError), (("acc",), ConfigError), (("accuracy", "accuracy"), ConfigError)],
)
def test_bad_metric_names(names: tuple[str, ...], error: type[Exception]) -> None:
    with pytest.raises(error):
        compute_metrics(names, np.array([0, 1]), np.array([0, 1]))


@pytest.mark.parametrize(
    ("metric", "preds", "labels", "match"),
    [
        ("accuracy", np.array([0, 1]), np.array([0, 1, 1]), "differ in length"),
        ("accuracy", np.zeros((3, 2)), np.array([0, 1, 1]), "1-D"),
        ("accuracy", np.array([], dtype=int), np.array([], dtype=int), "empty"),
        ("accuracy", np.array([0.2, 0.9]), np.array([0, 1]), "class indices"),
        ("f1", np.array([0, 2]), np.array([0, 1]), "binary"),
        ("pearson", np.array([0.1, np.nan]), np.array([0.0, 1.0]), "non-finite"),
        ("accuracy", np.array(["a", "b"]), np.array([0, 1]), "numeric"),
    ],
)
def test_bad_arrays_raise_data_error(
    metric: str, preds: np.ndarray, labels: np.ndarray, match: str
) -> None:
    with pytest.raises(DataError, match=match):
        compute_metrics((metric,), preds, labels)


def test_errors_are_value_errors() -> None:
    assert issubclass(DataError, ValueError)
    assert issubclass(ConfigError, ValueError)


def test_metric_names_constant() -> None:
    assert set(METRIC_NAMES) == {"accuracy", "f1", "mcc", "pearson", "spearman"}


# --- per-task evaluation, task score and average ---------------------------------------------


def test_single_split_task_gives_flat_keys() -> None:
    spec = Spec("mrpc", ("f1", "accuracy"))
    result = evaluate_task_metrics(
        spec, {"dev": np.array([1, 1, 0, 0])}, {"dev": np.array([1, 0, 0, 0])}
    )
    # TP=1 FP=1 FN=0 -> F1 = 2/3; accuracy 3/4.
    assert result == pytest.approx({"f1": 2 / 3, "accuracy": 0.75})


def test_multi_split_task_prefixes_split_names() -> None:
    spec = Spec("mnli", ("accuracy",), ("dev_matched", "dev_mismatched"))
    preds = {"dev_matched": np.array([0, 1, 2, 2]), "dev_mismatched": np.array([0, 1])}
    labels = {"dev_matched": np.array([0, 1, 2, 0]), "dev_mismatched": np.array([0, 0])}
    result = evaluate_task_metrics(spec, preds, labels)
    assert result == pytest.approx({"dev_matched/accuracy": 0.75, "dev_mismatched/accuracy": 0.5})
    # MNLI's one number is the mean of matched and mismatched.
    assert task_score(result) == pytest.approx(0.625)


def test_missing_eval_split_raises() -> None:
    spec = Spec("mnli", ("accuracy",), ("dev_matched", "dev_mismatched"))
    preds = {"dev_matched": np.array([0])}
    with pytest.raises(DataError, match="dev_mismatched"):
        evaluate_task_metrics(spec, preds, dict(preds))


def test_task_score_glue_conventions() -> None:
    assert task_score({"f1": 0.9, "accuracy": 0.8}) == pytest.approx(0.85)  # MRPC, QQP
    assert task_score({"pearson": 0.9, "spearman": 0.88}) == pytest.approx(0.89)  # STS-B
    assert task_score({"mcc": 0.6}) == pytest.approx(0.6)  # CoLA


def test_task_score_ignores_non_metric_keys() -> None:
    assert task_score({"accuracy": 0.7, "loss": 2.3, "dev/n_examples": 10}) == pytest.approx(0.7)


def test_task_score_without_metrics_raises() -> None:
    with pytest.raises(DataError):
        task_score({"loss": 1.0})


def test_average_score_excludes_wnli_and_ax() -> None:
    per_task = {
        "cola": {"mcc": 0.6},
        "mrpc": {"f1": 0.9, "accuracy": 0.8},
        "rte": {"accuracy": 0.7},
        "wnli": {"accuracy": 0.1},
        "ax": {"mcc": 0.0},
    }
    # (0.6 + 0.85 + 0.7) / 3
    assert average_score(per_task) == pytest.approx(2.15 / 3)
    assert average_score(per_task, exclude=()) == pytest.approx((2.15 + 0.1 + 0.0) / 5)


def test_average_score_with_nothing_left_raises() -> None:
    with pytest.raises(DataError, match="no task"):
        average_score({"wnli": {"accuracy": 0.5}})
