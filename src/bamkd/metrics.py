"""GLUE metrics and the paper's per-task and average scores.

Evaluation in BAM (BAM_SPEC.md, "Evaluation") reports accuracy, binary F1, Matthews correlation,
Pearson and Spearman on GLUE dev, and the paper's "Avg" is the plain mean of one number per task.
This module is the single place those numbers are computed, so every report, test and experiment
agrees on them. The formulas themselves come from scikit-learn and SciPy; what lives here is the
GLUE conventions around them (positive class 1 for F1, one score per task, WNLI excluded from the
average) and the handling of degenerate inputs that would otherwise produce NaN and warnings.

All values are fractions (accuracy in [0, 1], correlations in [-1, 1]); turning them into the
percentages of the paper's tables is the reports' job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from bamkd.errors import ConfigError, DataError

if TYPE_CHECKING:
    from bamkd.tasks.spec import TaskSpec

logger = logging.getLogger(__name__)

CLASSIFICATION_METRICS: tuple[str, ...] = ("accuracy", "f1", "mcc")
REGRESSION_METRICS: tuple[str, ...] = ("pearson", "spearman")
METRIC_NAMES: tuple[str, ...] = CLASSIFICATION_METRICS + REGRESSION_METRICS

# Tasks the paper's "Avg" leaves out: WNLI (adversarial dev set, the paper skips it, BAM_SPEC.md)
# and AX (a diagnostic set with no training data, only ever scored on the GLUE server).
DEFAULT_AVERAGE_EXCLUDE: tuple[str, ...] = ("wnli", "ax")

# Separator between an eval split and a metric name in multi-split results ("dev_matched/accuracy").
SPLIT_SEPARATOR = "/"


def _as_1d(name: str, values: np.ndarray | Sequence[float]) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise DataError(
            f"{name} must be a 1-D array with one value per example, got shape {array.shape}"
            " (pass class indices, not logits: take argmax over the last axis first)"
        )
    if array.size == 0:
        raise DataError(f"{name} is empty; there is nothing to score")
    if not np.issubdtype(array.dtype, np.number) and array.dtype != np.bool_:
        raise DataError(f"{name} must be numeric, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise DataError(f"{name} has {bad} non-finite value(s) (NaN or inf) out of {array.size}")
    return array


def _as_class_indices(name: str, array: np.ndarray, metric: str) -> np.ndarray:
    # Labels often arrive as float arrays after a round trip through numpy/torch; integral values
    # are class indices all the same. Anything else means scores or logits were passed by mistake.
    is_index_dtype = np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_
    if not is_index_dtype and not np.all(array == np.round(array)):
        raise DataError(
            f"metric {metric!r} needs class indices, but {name} has non-integer values"
            " (regression scores or probabilities?)"
        )
    return array.astype(np.int64)


def _accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(skm.accuracy_score(labels, predictions))


def _f1(predictions: np.ndarray, labels: np.ndarray) -> float:
    # GLUE reports binary F1 of the positive class 1 ("paraphrase"/"duplicate") for MRPC and QQP.
    seen = set(np.unique(np.concatenate([labels, predictions])).tolist())
    if not seen <= {0, 1}:
        raise DataError(
            f"f1 is GLUE's binary F1 of class 1 and needs labels in {{0, 1}}, got {sorted(seen)}"
        )
    # zero_division=0: no positive predictions and no positive labels gives 0, without a warning.
    return float(
        skm.f1_score(labels, predictions, pos_label=1, average="binary", zero_division=0.0)
    )


def _mcc(predictions: np.ndarray, labels: np.ndarray) -> float:
    # With a single class in both arrays sklearn's confusion matrix warns about its shape. MCC is
    # undefined there (zero denominator), and sklearn's own convention for that case is 0.0.
    if np.unique(np.concatenate([labels, predictions])).size < 2:
        return 0.0
    return float(skm.matthews_corrcoef(labels, predictions))


def _is_constant(array: np.ndarray) -> bool:
    return bool(np.all(array == array[0]))


def _pearson(predictions: np.ndarray, labels: np.ndarray) -> float:
    # A correlation with a constant side is undefined: SciPy warns and returns NaN. A model that
    # predicts one value for every example has no linear relation to the labels, so report 0.0.
    if _is_constant(predictions) or _is_constant(labels):
        return 0.0
    return float(stats.pearsonr(predictions.astype(np.float64), labels.astype(np.float64))[0])


def _spearman(predictions: np.ndarray, labels: np.ndarray) -> float:
    # Same reasoning as _pearson: constant ranks have no correlation; 0.0 instead of NaN.
    if _is_constant(predictions) or _is_constant(labels):
        return 0.0
    return float(stats.spearmanr(predictions, labels)[0])


_METRIC_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": _accuracy,
    "f1": _f1,
    "mcc": _mcc,
    "pearson": _pearson,
    "spearman": _spearman,
}


def compute_metrics(
    metric_names: Sequence[str],
    predictions: np.ndarray | Sequence[float],
    labels: np.ndarray | Sequence[float],
) -> dict[str, float]:
    """Compute GLUE metrics for one task on one split.

    Args:
        metric_names: Names from ``METRIC_NAMES``: "accuracy", "f1" (binary, positive class 1),
            "mcc" (Matthews correlation), "pearson", "spearman".
        predictions: One value per example: class indices for classification metrics, raw scores
            for correlations (Pearson and Spearman do not depend on the scale, so STS-B scores in
            [0, 1] or [0, 5] give the same numbers).
        labels: Gold values, aligned with ``predictions``.

    Returns:
        ``{metric_name: value}`` in the order asked, as fractions (not percent). Correlations with
        a constant side and MCC with a single class are 0.0 rather than NaN.

    Raises:
        ConfigError: An unknown or repeated metric name, or no metric names.
        DataError: Arrays that are not 1-D, empty, of different lengths, non-finite, or not class
            indices where a classification metric needs them.
    """
    names = list(metric_names)
    if not names:
        raise ConfigError("no metric names given; choose from " + ", ".join(METRIC_NAMES))
    unknown = [name for name in names if name not in _METRIC_FUNCTIONS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; choose from {', '.join(METRIC_NAMES)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"metric names repeat: {names}")

    preds = _as_1d("predictions", predictions)
    golds = _as_1d("labels", labels)
    if preds.shape != golds.shape:
        raise DataError(
            f"predictions and labels differ in length: {preds.shape[0]} vs {golds.shape[0]}"
        )

    results: dict[str, float] = {}
    for name in names:
        if name in CLASSIFICATION_METRICS:
            p = _as_class_indices("predictions", preds, name)
            g = _as_class_indices("labels", golds, name)
        else:
            p, g = preds, golds
        results[name] = _METRIC_FUNCTIONS[name](p, g)
    return results


def evaluate_task_metrics(
    spec: TaskSpec,
    predictions: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
) -> dict[str, float]:
    """Compute a task's metrics on all of its eval splits, in the shape reports expect.

    The output format is fixed by the task, not by what was passed: a task with one eval split
    gives flat keys (``{"accuracy": 0.91}``); a task with several (MNLI) gives keys prefixed with
    the split (``{"dev_matched/accuracy": ..., "dev_mismatched/accuracy": ...}``). ``task_score``
    then averages all of them, so MNLI's one number is the mean of matched and mismatched accuracy.

    Args:
        spec: The task; uses ``spec.metrics`` and ``spec.eval_splits``.
        predictions: ``{split: predictions}`` for every split in ``spec.eval_splits``.
        labels: ``{split: labels}`` for the same splits.

    Returns:
        The flat metrics dict described above, with fractions as values.

    Raises:
        DataError: A split of ``spec.eval_splits`` missing from ``predictions`` or ``labels``, or
            any error of ``compute_metrics``.
    """
    splits = tuple(spec.eval_splits)
    if not splits:
        raise ConfigError(f"task {spec.name!r} has no eval splits to evaluate")
    for source, mapping in (("predictions", predictions), ("labels", labels)):
        absent = [split for split in splits if split not in mapping]
        if absent:
            raise DataError(
                f"task {spec.name!r}: {source} lack eval split(s) {absent}; expected {list(splits)}"
            )

    if len(splits) == 1:
        return compute_metrics(spec.metrics, predictions[splits[0]], labels[splits[0]])
    results: dict[str, float] = {}
    for split in splits:
        split_metrics = compute_metrics(spec.metrics, predictions[split], labels[split])
        for name, value in split_metrics.items():
            results[f"{split}{SPLIT_SEPARATOR}{name}"] = value
    return results


def task_score(metrics: Mapping[str, float]) -> float:
    """Reduce one task's metrics to the single number the paper's "Avg" uses.

    GLUE convention: the mean of the task's metrics, i.e. MRPC and QQP average F1 and accuracy,
    STS-B averages Pearson and Spearman, MNLI averages matched and mismatched accuracy. Keys are
    the output of ``evaluate_task_metrics``: a metric name, optionally prefixed with a split and
    ``/``. Keys whose metric part is not a GLUE metric (a loss, an example count) are not scores and
    are ignored.

    Args:
        metrics: ``{"accuracy": 0.9}`` or ``{"dev_matched/accuracy": ..., ...}``.

    Returns:
        The mean of the metric values, as a fraction.

    Raises:
        DataError: No GLUE metric among the keys.
    """
    values = [
        float(value)
        for key, value in metrics.items()
        if key.rsplit(SPLIT_SEPARATOR, 1)[-1] in _METRIC_FUNCTIONS
    ]
    if not values:
        raise DataError(
            f"no GLUE metric among keys {sorted(metrics)}; expected names from {METRIC_NAMES}"
        )
    return float(np.mean(values))


def average_score(
    per_task: Mapping[str, Mapping[str, float]],
    exclude: Sequence[str] = DEFAULT_AVERAGE_EXCLUDE,
) -> float:
    """The paper's "Avg": the plain mean of ``task_score`` over tasks.

    Args:
        per_task: ``{task_name: metrics}`` with metrics as ``evaluate_task_metrics`` returns them.
        exclude: Task names left out of the mean. The paper's Avg covers 8 GLUE tasks, without
            WNLI; AX has no dev labels and is excluded too.

    Returns:
        The mean task score, as a fraction.

    Raises:
        DataError: No task left after the exclusions, or a task without any GLUE metric.
    """
    excluded = set(exclude)
    included = [task for task in per_task if task not in excluded]
    scores = [task_score(per_task[task]) for task in included]
    if not scores:
        raise DataError(
            f"no task to average: got {sorted(per_task)}, all excluded by {sorted(excluded)}"
        )
    logger.debug("average score over %d task(s): %s", len(included), ", ".join(included))
    return float(np.mean(scores))
