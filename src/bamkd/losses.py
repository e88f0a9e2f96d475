"""The method's formulas: the mixed gold/teacher losses and the loss of a multi-task batch
assembled from them (the teacher-annealing schedules are in `bamkd.schedules`).

Each function is small and pure so it can be checked line by line against BAM_SPEC.md:
target = lambda * gold + (1 - lambda) * teacher, with lambda = progress under teacher annealing.
Cross-entropy is linear in its target, so the mixed-target loss equals
lambda * CE(gold) + (1 - lambda) * CE(teacher).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bamkd.schedules import gold_weight
from bamkd.tasks import TaskSpec


def teacher_probs(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Soft targets q = softmax(teacher_logits / T); no T^2 factor (the paper, T = 1)."""
    return torch.softmax(logits.float() / temperature, dim=-1)


def classification_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    teacher: torch.Tensor | None,
    lam: torch.Tensor,
) -> torch.Tensor:
    """Per-example cross-entropy against lambda * one_hot(gold) + (1 - lambda) * teacher.

    logits [B, C]; labels [B] class indices; teacher [B, C] probabilities or None; lam [B].
    """
    log_p = F.log_softmax(logits.float(), dim=-1)
    gold = F.one_hot(labels.long(), logits.shape[-1]).to(log_p.dtype)
    target = gold if teacher is None else lam[:, None] * gold + (1 - lam[:, None]) * teacher
    return -(target * log_p).sum(dim=-1)


def regression_loss(
    pred: torch.Tensor,
    gold: torch.Tensor,
    teacher: torch.Tensor | None,
    lam: torch.Tensor,
) -> torch.Tensor:
    """Per-example squared error against lambda * gold + (1 - lambda) * teacher.

    All values on the [0, 1] scale (gold / 5 for STS-B); pred, gold, teacher, lam are [B].
    """
    target = gold if teacher is None else lam * gold + (1 - lam) * teacher
    return (pred.float() - target) ** 2


# --------------------------------------------------------------------------------------------
# The loss of a multi-task batch
# --------------------------------------------------------------------------------------------


@dataclass
class TaskTraining:
    """Per-task facts the loss needs, in the order of the model's task list."""

    spec: TaskSpec
    loss_weight: float
    """Factor on each of the task's rows (the task weighting, sampling.py)."""
    has_teacher: bool
    schedule: str
    """The task's distillation schedule (``gold_weight``), per-task override resolved."""
    weight: float
    """Teacher weight of the constant schedule, per-task override resolved."""


def gold_weights(
    tasks: list[TaskTraining], step: int, total_steps: int, step_at: float
) -> torch.Tensor:
    """lambda per task at ``step``: 1 for tasks without a teacher."""
    return torch.tensor(
        [
            gold_weight(t.schedule, step, total_steps, t.weight, step_at) if t.has_teacher else 1.0
            for t in tasks
        ]
    )


def batch_loss(
    outputs: Mapping[str, torch.Tensor],
    batch: Mapping[str, torch.Tensor],
    tasks: list[TaskTraining],
    lam: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sum over rows of loss_weight[task] * loss(row), each row scored by its own task's head.

    Every head runs on every row and contributes through ``torch.where``, so all heads stay in
    the graph (which keeps DDP happy). ``lam[t]`` is the gold weight of task t at this step.
    Regression labels go to the [0, 1] training scale with the task's own ``scale_label``.
    Returns the weighted total and, per task, the unweighted loss sum and row count (for logs).
    """
    task_ids = batch["task_ids"]
    labels = batch["labels"].float()
    teacher = batch.get("teacher")
    total = outputs[tasks[0].spec.name].new_zeros((), dtype=torch.float32)
    sums = torch.zeros(len(tasks))
    counts = torch.zeros(len(tasks))
    for t, info in enumerate(tasks):
        spec = info.spec
        mask = task_ids == t
        row_lam = torch.full_like(labels, float(lam[t]))
        soft = teacher if info.has_teacher else None
        if spec.kind == "classification":
            gold = torch.where(mask, labels, torch.zeros_like(labels)).long()
            if soft is not None:
                soft = torch.nan_to_num(soft[:, : spec.num_outputs])
            per_row = classification_loss(outputs[spec.name], gold, soft, row_lam)
        else:
            gold = torch.where(mask, spec.scale_label(labels), torch.zeros_like(labels))
            if soft is not None:
                soft = torch.nan_to_num(soft[:, 0])
            per_row = regression_loss(outputs[spec.name], gold, soft, row_lam)
        per_row = torch.where(mask, per_row, torch.zeros_like(per_row))
        total = total + info.loss_weight * per_row.sum()
        sums[t] = per_row.detach().sum().cpu()
        counts[t] = mask.sum().cpu()
    return total, sums, counts


def loss_scale(reduction: str, world_size: int, global_rows: int, local_rows: int) -> float:
    """The factor on one process's summed batch loss before backward.

    DDP averages gradients over the ``world_size`` processes. With ``sum`` reduction, times
    ``world_size`` undoes that average, so the gradient is the sum over the global batch; with
    ``mean``, ``world_size / global_rows`` makes it the mean over the global batch. A process
    with no rows of its own (a last batch smaller than the process count) still runs a stand-in
    row to join the collective, scaled by 0 so it contributes nothing.
    """
    if local_rows == 0:
        return 0.0
    return float(world_size) if reduction == "sum" else world_size / global_rows
