"""Task weighting and batch planning against BAM_SPEC.md ("Multi-task training").

Expected numbers are worked out by hand in the comments, never by calling the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bamkd.sampling import (
    BatchPlan,
    TaskWeighting,
    bam_task_weights,
    concat_task_weights,
    make_task_weighting,
    proportional_task_weights,
    shard,
    split_micro,
)

# The eight GLUE training sets, MRPC and STS-B doubled by sentence swapping (BAM_SPEC.md).
GLUE_SIZES = {
    "cola": 8551,
    "sst2": 67349,
    "mrpc": 3668 * 2,
    "stsb": 5749 * 2,
    "qqp": 363846,
    "mnli": 392702,
    "qnli": 104743,
    "rte": 2490,
}


# --------------------------------------------------------------------------------------------
# bam_task_weights
# --------------------------------------------------------------------------------------------


def test_bam_multiples_for_glue_match_the_paper() -> None:
    # BAM_SPEC.md: "With the 8 GLUE tasks this gives multiples CoLA 3, SST-2 2, MRPC 3, STS-B 2,
    # QQP 1, MNLI 1, QNLI 1, RTE 4". (Before rounding: 2.60, 1.55, 2.70, 2.42, 1.02, 1.00, 1.39,
    # 3.54.)
    weighting = bam_task_weights(GLUE_SIZES, 0.75)
    assert weighting.multiples == {
        "cola": 3,
        "sst2": 2,
        "mrpc": 3,
        "stsb": 2,
        "qqp": 1,
        "mnli": 1,
        "qnli": 1,
        "rte": 4,
    }
    assert weighting.probabilities is None


def test_bam_task_mass_is_proportional_to_size_power_075() -> None:
    weighting = bam_task_weights(GLUE_SIZES, 0.75)
    # Mass per task = size * multiple * loss_weight; divided by size^0.75 it must be one constant.
    ratios = [
        GLUE_SIZES[t] * weighting.multiples[t] * weighting.loss_weights[t] / GLUE_SIZES[t] ** 0.75
        for t in GLUE_SIZES
    ]
    for r in ratios:
        assert r == pytest.approx(ratios[0], rel=1e-9)
    # The per-task loss weights are K * normalised values, so they sum to K = 8.
    assert sum(weighting.loss_weights.values()) == pytest.approx(8.0, rel=1e-12)


def test_bam_two_tasks_by_hand_equal_loss_weights() -> None:
    # sizes 16 and 1, exponent 0.5: s^e = 4, 1; w = 0.8, 0.2. Largest is a: scale = 16 / 0.8 = 20,
    # targets 16 and 4; multiples round(16.01 / 16) = 1, round(4.01 / 1) = 4; new sizes 16, 4;
    # w / n = 0.05 and 0.05, so both loss weights are 2 * 0.5 = 1.
    weighting = bam_task_weights({"a": 16, "b": 1}, 0.5)
    assert weighting.multiples == {"a": 1, "b": 4}
    assert weighting.loss_weights == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}


def test_bam_two_tasks_by_hand_unequal_loss_weights() -> None:
    # sizes 100 and 10, exponent 0.5: s^e = 10, sqrt(10). Target size of b =
    # sqrt(10) * 100 / 10 = 31.62, multiple round(31.63 / 10) = 3 (new size 30).
    # w / n is proportional to 10 / 100 = 0.1 and sqrt(10) / 30; normalised times K = 2:
    # weight_a = 6 / (3 + sqrt 10) = 0.97368, weight_b = 2 sqrt 10 / (3 + sqrt 10) = 1.02632.
    weighting = bam_task_weights({"a": 100, "b": 10}, 0.5)
    assert weighting.multiples == {"a": 1, "b": 3}
    root = math.sqrt(10)
    assert weighting.loss_weights["a"] == pytest.approx(6 / (3 + root), rel=1e-12)
    assert weighting.loss_weights["b"] == pytest.approx(2 * root / (3 + root), rel=1e-12)
    # Mass ratio a / b = 100 * w_a / (30 * w_b) = sqrt(10) = 100^0.5 / 10^0.5.
    mass_a = 100 * weighting.loss_weights["a"]
    mass_b = 30 * weighting.loss_weights["b"]
    assert mass_a / mass_b == pytest.approx(root, rel=1e-12)


def test_bam_single_task_is_plain_training() -> None:
    weighting = bam_task_weights({"mrpc": 7336}, 0.75)
    assert weighting.multiples == {"mrpc": 1}
    assert weighting.loss_weights == {"mrpc": pytest.approx(1.0)}


@pytest.mark.parametrize("sizes", [{}, {"a": 3, "b": 0}, {"a": -1}])
def test_weightings_reject_empty_tasks(sizes: dict[str, int]) -> None:
    for fn in (bam_task_weights, concat_task_weights, proportional_task_weights):
        with pytest.raises(ValueError, match="at least one training example"):
            fn(sizes)


def test_concat_weights_are_all_ones() -> None:
    weighting = concat_task_weights({"a": 10, "b": 3})
    assert weighting == TaskWeighting({"a": 1, "b": 1}, {"a": 1.0, "b": 1.0}, None)


def test_proportional_probabilities_by_hand() -> None:
    # T = 1: 1000 / 4000 = 0.25 and 0.75.
    w = proportional_task_weights({"a": 1000, "b": 3000}, 1.0)
    assert w.probabilities == {"a": pytest.approx(0.25), "b": pytest.approx(0.75)}
    # T = 2: sqrt(1000) : sqrt(3000) = 1 : sqrt(3), so a gets 1 / (1 + sqrt 3) = 0.36603.
    w = proportional_task_weights({"a": 1000, "b": 3000}, 2.0)
    assert w.probabilities is not None
    assert w.probabilities["a"] == pytest.approx(1 / (1 + math.sqrt(3)), rel=1e-12)
    assert sum(w.probabilities.values()) == pytest.approx(1.0, rel=1e-12)
    assert w.multiples == {"a": 1, "b": 1}
    assert w.loss_weights == {"a": 1.0, "b": 1.0}


def test_make_task_weighting_dispatches_and_rejects_unknown() -> None:
    sizes = {"a": 16, "b": 1}
    assert make_task_weighting("bam", sizes, exponent=0.5).multiples == {"a": 1, "b": 4}
    assert make_task_weighting("concat", sizes).multiples == {"a": 1, "b": 1}
    assert make_task_weighting("proportional", sizes).probabilities is not None
    with pytest.raises(ValueError, match="'uniform'"):
        make_task_weighting("uniform", sizes)


# --------------------------------------------------------------------------------------------
# BatchPlan
# --------------------------------------------------------------------------------------------


def _plan(batch_size: int = 4, seed: int = 7, **kwargs) -> BatchPlan:
    # Task a owns rows 0..4 (twice per epoch), task b rows 5..7 (three times): epoch of
    # 5 * 2 + 3 * 3 = 19 rows, ceil(19 / 4) = 5 batches.
    weighting = TaskWeighting({"a": 2, "b": 3}, {"a": 1.0, "b": 1.0})
    return BatchPlan({"a": 5, "b": 3}, weighting, batch_size, seed, **kwargs)


def test_plan_sizes() -> None:
    plan = _plan()
    assert plan.epoch_size == 19
    assert plan.batches_per_epoch == 5
    batches = plan.epoch_batches(0)
    assert [len(b) for b in batches] == [4, 4, 4, 4, 3]  # the last partial batch is kept


def test_every_row_appears_multiple_times_per_epoch() -> None:
    plan = _plan()
    for epoch in range(3):
        rows = np.concatenate(plan.epoch_batches(epoch))
        counts = np.bincount(rows, minlength=8)
        assert counts.tolist() == [2, 2, 2, 2, 2, 3, 3, 3]


def test_epoch_order_is_deterministic_and_differs_between_epochs() -> None:
    a, b = _plan(seed=7), _plan(seed=7)
    for epoch in range(3):
        assert [x.tolist() for x in a.epoch_batches(epoch)] == [
            x.tolist() for x in b.epoch_batches(epoch)
        ]
    assert [x.tolist() for x in a.epoch_batches(0)] != [x.tolist() for x in a.epoch_batches(1)]
    other_seed = _plan(seed=8)
    assert [x.tolist() for x in a.epoch_batches(0)] != [
        x.tolist() for x in other_seed.epoch_batches(0)
    ]


def test_bam_plan_on_real_weighting_covers_rows() -> None:
    # sizes 16 and 1 at exponent 0.5 give multiples 1 and 4 (worked out above): 20 rows per epoch.
    sizes = {"a": 16, "b": 1}
    plan = BatchPlan(sizes, bam_task_weights(sizes, 0.5), batch_size=3, seed=0)
    assert plan.epoch_size == 20
    assert plan.batches_per_epoch == 7  # ceil(20 / 3)
    counts = np.bincount(np.concatenate(plan.epoch_batches(0)), minlength=17)
    assert counts.tolist() == [1] * 16 + [4]


def _padding_waste(batches: list[np.ndarray], lengths: np.ndarray) -> int:
    return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches)


def test_length_grouped_covers_rows_and_pads_less() -> None:
    rng = np.random.default_rng(0)
    sizes = {"a": 300, "b": 100}
    lengths = rng.integers(5, 120, size=400)
    weighting = TaskWeighting({"a": 1, "b": 2}, {"a": 1.0, "b": 1.0})
    grouped = BatchPlan(sizes, weighting, 8, seed=3, lengths=lengths, length_grouped=True)
    plain = BatchPlan(sizes, weighting, 8, seed=3, lengths=lengths, length_grouped=False)
    assert grouped.batches_per_epoch == plain.batches_per_epoch == 63  # ceil(500 / 8)
    for epoch in range(2):
        batches = grouped.epoch_batches(epoch)
        assert len(batches) == 63
        assert all(1 <= len(b) <= 8 for b in batches)
        counts = np.bincount(np.concatenate(batches), minlength=400)
        assert counts.tolist() == [1] * 300 + [2] * 100
        # Sorted batches hold similar lengths: far less padding than a random order.
        assert _padding_waste(batches, lengths) < 0.25 * _padding_waste(
            plain.epoch_batches(epoch), lengths
        )
    assert [b.tolist() for b in grouped.epoch_batches(0)] == [
        b.tolist() for b in grouped.epoch_batches(0)
    ]


def test_length_grouped_without_lengths_falls_back_to_random() -> None:
    plan = _plan(length_grouped=True)
    assert plan.length_grouped is False
    assert [b.tolist() for b in plan.epoch_batches(0)] == [
        b.tolist() for b in _plan().epoch_batches(0)
    ]


@pytest.mark.parametrize(
    ("epochs", "expected"),
    [(1, 5), (2, 10), (2.5, 13), (0.1, 1), (0.5, 3), (6, 30)],
)
def test_total_steps(epochs: float, expected: int) -> None:
    # 5 batches per epoch: ceil(epochs * 5); 2.5 -> 12.5 -> 13, 0.1 -> 0.5 -> 1, 0.5 -> 2.5 -> 3.
    assert _plan().total_steps(epochs) == expected


def test_total_steps_is_exact_for_decimal_epochs() -> None:
    # 100 rows, batch 1, concat: 100 batches per epoch; 1.1 epochs is exactly 110 steps.
    plan = BatchPlan({"a": 100}, concat_task_weights({"a": 100}), batch_size=1, seed=0)
    assert plan.batches_per_epoch == 100
    assert plan.total_steps(1.1) == 110


def test_task_index() -> None:
    plan = _plan()  # a: rows 0..4, b: rows 5..7
    rows = np.array([0, 4, 5, 7, 2, 6])
    assert plan.task_index(rows).tolist() == [0, 0, 1, 1, 0, 1]


def test_proportional_sampling_frequencies() -> None:
    # T = 2 on sizes 1000 and 3000: P(a) = 1 / (1 + sqrt 3) = 0.36603. 10 epochs of 4000 draws:
    # binomial sd = sqrt(0.366 * 0.634 / 40000) = 0.0024; the tolerance 0.012 is 5 sd, and the
    # seed is fixed, so this cannot flake.
    sizes = {"a": 1000, "b": 3000}
    plan = BatchPlan(sizes, proportional_task_weights(sizes, 2.0), batch_size=64, seed=11)
    assert plan.epoch_size == 4000
    rows = np.concatenate([np.concatenate(plan.epoch_batches(e)) for e in range(10)])
    assert len(rows) == 40000
    assert rows.min() >= 0 and rows.max() < 4000
    tasks = plan.task_index(rows)
    assert abs(np.mean(tasks == 0) - 1 / (1 + math.sqrt(3))) < 0.012
    # Within a task, rows are drawn uniformly: each of a's 1000 rows ~ 14.6 times; every row
    # of a appears and no row is drawn wildly more often than others.
    counts_a = np.bincount(rows[tasks == 0], minlength=1000)
    assert counts_a.min() > 0 and counts_a.max() < 45


# --------------------------------------------------------------------------------------------
# shard / split_micro
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("world", [1, 2, 3, 4, 11])
def test_shards_partition_the_batch(world: int) -> None:
    batch = np.array([17, 3, 9, 42, 5, 8, 1, 30, 12, 7])
    parts = [shard(batch, rank, world) for rank in range(world)]
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == sorted(batch.tolist())  # union is the batch
    assert len(joined) == len(batch)  # and the shares are disjoint
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_split_micro_keeps_order_and_drops_empty() -> None:
    parts = split_micro(np.arange(5), 2)
    assert [p.tolist() for p in parts] == [[0, 1, 2], [3, 4]]
    parts = split_micro(np.arange(2), 4)
    assert [p.tolist() for p in parts] == [[0], [1]]


# --------------------------------------------------------------------------------------------
# The authors' reference multiples, explicit multiples, and mixed batches
# --------------------------------------------------------------------------------------------

# The study's five tasks as loaded: SST-2 cut to its first 8,551 rows, MRPC and STS-B doubled.
STUDY_SIZES = {"cola": 8551, "sst2": 8551, "mrpc": 7336, "stsb": 11498, "rte": 2490}


def test_loaded_size_multiples_collapse_to_one_on_the_study_subset() -> None:
    assert set(bam_task_weights(STUDY_SIZES).multiples.values()) == {1}


def test_reference_multiples_keep_the_papers_exposure_on_a_subset() -> None:
    w = make_task_weighting("reference", STUDY_SIZES)
    assert w.multiples == {"cola": 3, "sst2": 2, "mrpc": 3, "stsb": 2, "rte": 4}
    # 8551*3 + 8551*2 + 7336*3 + 11498*2 + 2490*4 = 97,719 rows; ceil(/128) = 764 batches,
    # 4,584 steps over 6 epochs (the count).
    plan = BatchPlan(STUDY_SIZES, w, 128, seed=0)
    assert plan.epoch_size == 97_719
    assert plan.total_steps(6) == 4_584
    # Loss weights are the authors' over all eight tasks (8 * normalised w_t / n_t), so a subset
    # keeps the per-example weights of the full run: MRPC's and CoLA's by hand.
    total = sum(s**0.75 for s in GLUE_REFERENCE.values())
    raw = {t: s**0.75 / total / (s * m) for t, (s, m) in GLUE_REFERENCE_MULTIPLES.items()}
    norm = sum(raw.values())
    for task in ("cola", "mrpc", "rte"):
        assert w.loss_weights[task] == pytest.approx(8 * raw[task] / norm)


GLUE_REFERENCE = {
    "cola": 8551,
    "mnli": 392702,
    "mrpc": 7336,
    "qnli": 108436,
    "qqp": 363869,
    "sst2": 67349,
    "stsb": 11498,
    "rte": 2490,
}
GLUE_REFERENCE_MULTIPLES = {
    t: (s, m) for (t, s), m in zip(GLUE_REFERENCE.items(), [3, 1, 3, 1, 1, 2, 2, 4])
}


def test_reference_weighting_refuses_tasks_outside_glue() -> None:
    with pytest.raises(ValueError, match="task_weighting=bam"):
        make_task_weighting("reference", {"cola": 10, "my_task": 5})


def test_explicit_multiples_override_and_keep_task_mass_proportional() -> None:
    sizes = {"a": 1000, "b": 100}
    w = make_task_weighting("bam", sizes, multiples={"b": 5})
    assert w.multiples == {"a": 1, "b": 5}
    mass = {t: sizes[t] * w.multiples[t] * w.loss_weights[t] for t in sizes}
    assert mass["a"] / mass["b"] == pytest.approx((1000 / 100) ** 0.75)


@pytest.mark.parametrize("kind", ["bam", "reference"])
def test_explicit_multiples_keep_a_non_default_exponent(kind) -> None:
    sizes = {"cola": 1000, "rte": 100}
    w = make_task_weighting(kind, sizes, exponent=0.5, multiples={"rte": 5})
    mass = {t: sizes[t] * w.multiples[t] * w.loss_weights[t] for t in sizes}
    assert mass["cola"] / mass["rte"] == pytest.approx((1000 / 100) ** 0.5)


def test_explicit_multiples_must_name_trained_tasks_and_a_multiple_weighting() -> None:
    with pytest.raises(ValueError, match="not trained"):
        make_task_weighting("bam", {"a": 10}, multiples={"z": 2})
    with pytest.raises(ValueError, match="needs task_weighting"):
        make_task_weighting("concat", {"a": 10}, multiples={"a": 2})


def _composition(length_grouped: bool) -> tuple[float, float]:
    """Mean share of a batch's most common task, and the share of batches without RTE."""
    rng = np.random.default_rng(0)
    # Typical token lengths per task: CoLA short, RTE long, the others between.
    typical = {"cola": 11, "sst2": 13, "mrpc": 52, "stsb": 31, "rte": 70}
    lengths = np.concatenate(
        [rng.poisson(typical[t], size=n).clip(3, 128) for t, n in STUDY_SIZES.items()]
    )
    w = make_task_weighting("reference", STUDY_SIZES)
    plan = BatchPlan(STUDY_SIZES, w, 128, 0, lengths, length_grouped)
    shares, no_rte = [], []
    for rows in plan.epoch_batches(0):
        counts = np.bincount(plan.task_index(rows), minlength=5)
        shares.append(counts.max() / len(rows))
        no_rte.append(counts[4] == 0)
    return float(np.mean(shares)), float(np.mean(no_rte))


def test_mixed_batches_carry_the_task_mixture_and_grouped_ones_do_not() -> None:
    mixed_share, mixed_no_rte = _composition(length_grouped=False)
    grouped_share, grouped_no_rte = _composition(length_grouped=True)
    # Mixed: each batch's largest task near its epoch share (the largest, 25,653 of 97,719 rows
    # = 0.26, plus sampling noise), and RTE (9,960 rows, ~13 a batch) in essentially every batch.
    assert mixed_share < 0.40
    assert mixed_no_rte < 0.01
    # Grouped by length: batches hold mostly one task, and many hold no RTE row at all.
    assert grouped_share > 0.55
    assert grouped_no_rte > 0.30


def test_rows_at_is_batch_k_mod_epoch_of_epoch_k_div_epoch_in_any_order() -> None:
    plan = BatchPlan({"a": 7, "b": 5}, concat_task_weights({"a": 7, "b": 5}), 4, seed=3)
    # 12 rows, batch 4: 3 batches per epoch; step 7 is batch 1 of epoch 2.
    assert plan.batches_per_epoch == 3
    by_epoch = [plan.epoch_batches(e) for e in range(3)]
    for step in [0, 1, 2, 3, 7, 8, 4, 0, 5]:  # forwards, then back to earlier epochs
        assert np.array_equal(plan.rows_at(step), by_epoch[step // 3][step % 3]), step
