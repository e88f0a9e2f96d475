"""The method's loss formulas (BAM_SPEC.md, "Losses"), checked against hand-computed values.

Also the multi-task batch loss of train.py: every row scored by its own task's head only, per-task
loss weights, teacher annealing per task, and no NaN from other tasks' teacher columns leaking.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bamkd.losses import (
    TaskTraining,
    batch_loss,
    classification_loss,
    gold_weight,
    gold_weights,
    loss_scale,
    regression_loss,
    teacher_probs,
)
from bamkd.sampling import shard
from bamkd.tasks import TaskSpec

LN2, LN3 = math.log(2.0), math.log(3.0)
NAN = float("nan")


# --------------------------------------------------------------------------------------------
# gold_weight: the teacher-annealing schedule
# --------------------------------------------------------------------------------------------


def test_anneal_is_linear_from_zero_to_one() -> None:
    # total 5: progress step / 4 = 0, .25, .5, .75, 1.
    assert [gold_weight("anneal", s, 5) for s in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_anneal_endpoints_for_long_runs() -> None:
    assert gold_weight("anneal", 0, 1000) == 0.0
    assert gold_weight("anneal", 999, 1000) == 1.0
    assert gold_weight("anneal", 333, 1000) == pytest.approx(333 / 999)


def test_anneal_clamps_outside_the_run() -> None:
    assert gold_weight("anneal", 7, 5) == 1.0
    assert gold_weight("anneal", 0, 1) == 1.0  # a one-step run has progress 1


@pytest.mark.parametrize("w", [0.0, 0.3, 0.5, 1.0])
def test_constant_gives_one_minus_weight_at_every_step(w: float) -> None:
    # BAM_SPEC.md: target = (1 - w) gold + w teacher, so lambda = 1 - w.
    assert {gold_weight("constant", s, 10, weight=w) for s in range(10)} == {1.0 - w}


def test_cosine_endpoints_and_middle() -> None:
    # (1 - cos(pi p)) / 2: p = 0 -> 0; p = .5 -> (1 - 0) / 2 = .5; p = 1 -> (1 + 1) / 2 = 1;
    # p = .25 -> (1 - sqrt(2)/2) / 2 = 0.14645.
    values = [gold_weight("cosine", s, 5) for s in range(5)]
    assert values[0] == pytest.approx(0.0, abs=1e-15)
    assert values[2] == pytest.approx(0.5, abs=1e-15)
    assert values[4] == pytest.approx(1.0, abs=1e-15)
    assert values[1] == pytest.approx((1 - math.sqrt(2) / 2) / 2, abs=1e-15)


def test_step_switches_at_step_at() -> None:
    # total 11: progress = step / 10. step_at .5: steps 0..4 are teacher only, 5..10 gold only.
    values = [gold_weight("step", s, 11, step_at=0.5) for s in range(11)]
    assert values == [0.0] * 5 + [1.0] * 6
    values = [gold_weight("step", s, 11, step_at=0.3) for s in range(11)]
    assert values == [0.0] * 3 + [1.0] * 8


def test_unknown_schedule_raises() -> None:
    with pytest.raises(ValueError, match="'linear'"):
        gold_weight("linear", 0, 10)


# --------------------------------------------------------------------------------------------
# teacher_probs, classification_loss, regression_loss
# --------------------------------------------------------------------------------------------


def test_teacher_probs_is_softmax_of_logits_over_temperature() -> None:
    # [0, 2 ln 3] / 2 = [0, ln 3] -> exp = 1, 3 -> [.25, .75]; T = 1: exp 1, 9 -> [.1, .9].
    logits = torch.tensor([[0.0, 2 * LN3]])
    assert torch.allclose(teacher_probs(logits, 2.0), torch.tensor([[0.25, 0.75]]))
    assert torch.allclose(teacher_probs(logits), torch.tensor([[0.1, 0.9]]))
    assert teacher_probs(logits.half()).dtype == torch.float32


def test_classification_loss_hand_case() -> None:
    # logits [0, ln 3] -> p = [.25, .75]; label 1, teacher [.5, .5], lambda .5 ->
    # target = .5 [0, 1] + .5 [.5, .5] = [.25, .75]; loss = -(.25 ln .25 + .75 ln .75) = 0.562335.
    loss = classification_loss(
        torch.tensor([[0.0, LN3]]),
        torch.tensor([1]),
        torch.tensor([[0.5, 0.5]]),
        torch.tensor([0.5]),
    )
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.562335, rel=1e-6)


def test_classification_loss_three_classes_by_hand() -> None:
    # Row 0: logits [0, 0, ln 2] -> p = [.25, .25, .5]; label 2, teacher [.5, .25, .25],
    #   lambda .5 -> target [.25, .125, .625]; loss = .375 ln 4 + .625 ln 2 = 1.375 ln 2.
    # Row 1: lambda 1 (gold only): -ln p[label]; logits [ln 3, 0, 0] -> p = [.6, .2, .2],
    #   label 1 -> ln 5.
    loss = classification_loss(
        torch.tensor([[0.0, 0.0, LN2], [LN3, 0.0, 0.0]]),
        torch.tensor([2, 1]),
        torch.tensor([[0.5, 0.25, 0.25], [0.9, 0.05, 0.05]]),
        torch.tensor([0.5, 1.0]),
    )
    assert loss.tolist() == pytest.approx([1.375 * LN2, math.log(5)], rel=1e-6)


def test_classification_loss_is_linear_in_the_target() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0, 3, 1, 2, 2, 0])
    teacher = torch.softmax(torch.randn(6, 4, generator=gen, dtype=torch.float64), -1)
    lam = torch.tensor([0.0, 0.2, 0.5, 0.7, 1.0, 0.35], dtype=torch.float64)
    mixed = classification_loss(logits, labels, teacher, lam)
    log_p = torch.log_softmax(logits, -1)
    ce_gold = -log_p[torch.arange(6), labels]
    ce_teacher = -(teacher * log_p).sum(-1)
    assert torch.allclose(mixed.double(), lam * ce_gold + (1 - lam) * ce_teacher, atol=1e-5)
    # lambda = 0 is pure distillation, lambda = 1 is gold only.
    assert mixed[0].item() == pytest.approx(ce_teacher[0].item(), rel=1e-5)
    assert mixed[4].item() == pytest.approx(ce_gold[4].item(), rel=1e-5)


def test_classification_loss_without_teacher_is_cross_entropy() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 3, generator=gen)
    labels = torch.tensor([0, 2, 1, 1, 0])
    loss = classification_loss(logits, labels, None, torch.full((5,), 0.3))
    expected = F.cross_entropy(logits, labels, reduction="none")
    assert torch.allclose(loss, expected, atol=1e-6)


def test_regression_loss_by_hand() -> None:
    # pred .5, gold .8, teacher .6, lambda .25: target = .2 + .45 = .65, loss (.5 - .65)^2 = .0225.
    # pred .1, gold .3, teacher .9, lambda 1: target .3, loss .04.
    # pred .7, gold .2, teacher .4, lambda 0: target .4, loss .09.
    loss = regression_loss(
        torch.tensor([0.5, 0.1, 0.7]),
        torch.tensor([0.8, 0.3, 0.2]),
        torch.tensor([0.6, 0.9, 0.4]),
        torch.tensor([0.25, 1.0, 0.0]),
    )
    assert loss.tolist() == pytest.approx([0.0225, 0.04, 0.09], abs=1e-7)


def test_regression_loss_without_teacher_is_squared_error() -> None:
    # (0.5 - 0.8)^2 = .09; (0.0 - 1.0)^2 = 1.
    loss = regression_loss(
        torch.tensor([0.5, 0.0]), torch.tensor([0.8, 1.0]), None, torch.tensor([0.0, 0.0])
    )
    assert loss.tolist() == pytest.approx([0.09, 1.0], abs=1e-7)


# --------------------------------------------------------------------------------------------
# train.batch_loss and train.gold_weights
# --------------------------------------------------------------------------------------------

THREE = TaskSpec(name="three", kind="classification", label_names=("a", "b", "c"))
SCORE = TaskSpec(name="score", kind="regression", regression_range=(0.0, 5.0), metrics=("pearson",))

# Rows 0 and 2 belong to task 0 (three-way classification), rows 1 and 3 to task 1 (regression).
TASK_IDS = torch.tensor([0, 1, 0, 1])
# Regression gold 4.0 and 1.5 (scaled /5: .8, .3); 4.0 is not even a valid class for task 0.
LABELS = torch.tensor([2.0, 4.0, 0.0, 1.5])
CLS_LOGITS = [[0.0, 0.0, LN2], [50.0, -30.0, 9.0], [LN3, 0.0, 0.0], [-40.0, 7.0, 3.0]]
REG_PRED = [0.9, 0.5, 0.05, 0.3]


def _tasks(cls_teacher: bool = True, reg_teacher: bool = True) -> list[TaskTraining]:
    return [
        TaskTraining(
            spec=THREE, loss_weight=0.7, has_teacher=cls_teacher, schedule="anneal", weight=0.5
        ),
        TaskTraining(
            spec=SCORE, loss_weight=1.3, has_teacher=reg_teacher, schedule="constant", weight=0.2
        ),
    ]


def _outputs() -> dict[str, torch.Tensor]:
    return {
        "three": torch.tensor(CLS_LOGITS, requires_grad=True),
        "score": torch.tensor(REG_PRED, requires_grad=True),
    }


def test_gold_weights_per_task() -> None:
    # step 2 of 5: anneal -> 2 / 4 = .5; constant w = .2 -> .8; a task without teacher -> 1.
    assert gold_weights(_tasks(), 2, 5, 0.5).tolist() == pytest.approx([0.5, 0.8])
    assert gold_weights(_tasks(cls_teacher=False), 2, 5, 0.5).tolist() == pytest.approx([1.0, 0.8])
    assert gold_weights(_tasks(), 0, 5, 0.5).tolist() == pytest.approx([0.0, 0.8])


def test_batch_loss_by_hand_with_both_teachers() -> None:
    # Teacher columns as ExampleStore lays them out: classification probabilities padded to the
    # widest task; regression score in column 0, NaN in the others.
    teacher = torch.tensor([[0.5, 0.25, 0.25], [0.6, NAN, NAN], [0.2, 0.2, 0.6], [0.1, NAN, NAN]])
    batch = {"task_ids": TASK_IDS, "labels": LABELS, "teacher": teacher}
    lam = gold_weights(_tasks(), 2, 5, 0.5)  # [.5, .8]
    outputs = _outputs()
    total, sums, counts = batch_loss(outputs, batch, _tasks(), lam)

    # Classification, lambda .5:
    #  row 0: p = [.25, .25, .5], target .5 [0,0,1] + .5 [.5,.25,.25] = [.25,.125,.625]
    #         loss = .375 ln 4 + .625 ln 2 = 1.375 ln 2
    #  row 2: p = [.6, .2, .2], target .5 [1,0,0] + .5 [.2,.2,.6] = [.6,.1,.3]
    #         loss = -(.6 ln .6 + .4 ln .2)
    cls_0 = 1.375 * LN2
    cls_2 = -(0.6 * math.log(0.6) + 0.4 * math.log(0.2))
    # Regression, lambda .8:
    #  row 1: gold 4 / 5 = .8, teacher .6 -> target .64 + .12 = .76; (.5 - .76)^2 = .0676
    #  row 3: gold 1.5 / 5 = .3, teacher .1 -> target .24 + .02 = .26; (.3 - .26)^2 = .0016
    reg_1, reg_3 = 0.0676, 0.0016
    expected = 0.7 * (cls_0 + cls_2) + 1.3 * (reg_1 + reg_3)
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert sums.tolist() == pytest.approx([cls_0 + cls_2, reg_1 + reg_3], rel=1e-6)
    assert counts.tolist() == [2.0, 2.0]

    total.backward()
    # d/dlogits = weight * (p - target) on own rows; exactly 0 on the other task's rows.
    g = outputs["three"].grad
    assert g is not None and torch.isfinite(g).all()
    assert g[0].tolist() == pytest.approx([0.0, 0.7 * 0.125, -0.7 * 0.125], abs=1e-6)
    assert g[2].tolist() == pytest.approx([0.0, 0.7 * 0.1, -0.7 * 0.1], abs=1e-6)
    assert g[1].tolist() == [0.0, 0.0, 0.0] and g[3].tolist() == [0.0, 0.0, 0.0]
    # d/dpred = weight * 2 (pred - target): row 1: 1.3 * 2 * (-.26) = -.676; row 3: .104.
    g = outputs["score"].grad
    assert g is not None and torch.isfinite(g).all()
    assert g.tolist() == pytest.approx([0.0, -0.676, 0.0, 0.104], abs=1e-6)


def test_nan_teacher_columns_of_other_tasks_do_not_leak() -> None:
    # Only the regression task has a teacher: every classification row's teacher entry is NaN,
    # and the regression head's teacher column 0 is NaN on those rows.
    teacher = torch.tensor([[NAN, NAN, NAN], [0.6, NAN, NAN], [NAN, NAN, NAN], [0.1, NAN, NAN]])
    batch = {"task_ids": TASK_IDS, "labels": LABELS, "teacher": teacher}
    tasks = _tasks(cls_teacher=False)
    lam = gold_weights(tasks, 2, 5, 0.5)  # [1, .8]
    outputs = _outputs()
    total, sums, _ = batch_loss(outputs, batch, tasks, lam)
    # Classification is gold only: -ln p[label]; row 0: -ln .5 = ln 2; row 2: -ln .6.
    cls = LN2 - math.log(0.6)
    expected = 0.7 * cls + 1.3 * (0.0676 + 0.0016)
    assert math.isfinite(total.item())
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert torch.isfinite(sums).all()
    total.backward()
    for name in ("three", "score"):
        grad = outputs[name].grad
        assert grad is not None and torch.isfinite(grad).all(), name
    assert outputs["score"].grad[0].item() == 0.0 and outputs["score"].grad[2].item() == 0.0


def test_batch_loss_without_any_teacher_is_weighted_gold_loss() -> None:
    batch = {"task_ids": TASK_IDS, "labels": LABELS}
    tasks = _tasks(cls_teacher=False, reg_teacher=False)
    lam = gold_weights(tasks, 0, 5, 0.5)
    assert lam.tolist() == [1.0, 1.0]
    total, _, _ = batch_loss(_outputs(), batch, tasks, lam)
    # Classification: ln 2 - ln .6. Regression gold only: (.5 - .8)^2 + (.3 - .3)^2 = .09.
    expected = 0.7 * (LN2 - math.log(0.6)) + 1.3 * 0.09
    assert total.item() == pytest.approx(expected, rel=1e-6)


def test_gradients_reach_every_head() -> None:
    torch.manual_seed(0)
    features = torch.randn(4, 5)
    heads = torch.nn.ModuleDict({"three": torch.nn.Linear(5, 3), "score": torch.nn.Linear(5, 1)})
    outputs = {
        "three": heads["three"](features),
        "score": torch.sigmoid(heads["score"](features).squeeze(-1)),
    }
    teacher = torch.tensor([[0.5, 0.25, 0.25], [0.6, NAN, NAN], [0.2, 0.2, 0.6], [0.1, NAN, NAN]])
    batch = {"task_ids": TASK_IDS, "labels": LABELS, "teacher": teacher}
    total, _, _ = batch_loss(outputs, batch, _tasks(), gold_weights(_tasks(), 1, 5, 0.5))
    total.backward()
    for name, param in heads.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


# --------------------------------------------------------------------------------------------
# loss_scale
# --------------------------------------------------------------------------------------------


def test_loss_scale_by_hand() -> None:
    assert loss_scale("sum", 1, 32, 32) == 1.0
    assert loss_scale("sum", 4, 32, 8) == 4.0
    assert loss_scale("mean", 1, 32, 32) == pytest.approx(1 / 32)
    assert loss_scale("mean", 4, 30, 7) == pytest.approx(4 / 30)
    # A process without rows of its own runs a stand-in row that must count nothing.
    assert loss_scale("sum", 4, 3, 0) == 0.0
    assert loss_scale("mean", 4, 3, 0) == 0.0


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_loss_scale_makes_ddps_average_the_global_sum_or_mean(world, reduction) -> None:
    # Per-row losses 1..10 over a global batch of 10 rows, sharded as the loop shards them;
    # DDP averages the processes' scaled local sums.
    rows = np.arange(1.0, 11.0)
    averaged = (
        sum(
            loss_scale(reduction, world, len(rows), len(shard(rows, r, world)))
            * shard(rows, r, world).sum()
            for r in range(world)
        )
        / world
    )
    assert averaged == pytest.approx(55.0 if reduction == "sum" else 5.5)
