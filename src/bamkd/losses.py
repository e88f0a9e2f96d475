"""The method's formulas: the teacher-annealing schedule and the mixed gold/teacher losses.

Each function is small and pure so it can be checked line by line against BAM_SPEC.md:
target = lambda * gold + (1 - lambda) * teacher, with lambda = progress under teacher annealing.
Cross-entropy is linear in its target, so the mixed-target loss equals
lambda * CE(gold) + (1 - lambda) * CE(teacher).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gold_weight(
    schedule: str, step: int, total_steps: int, weight: float = 0.5, step_at: float = 0.5
) -> float:
    """Weight lambda on the gold label at optimiser step ``step`` (0-based) of ``total_steps``.

    anneal: lambda = progress, 0 at the first step and 1 at the last (BAM_SPEC: "recomputed every
      step, ignoring warmup"). Progress is step / (total_steps - 1) so the last step trains on gold
      alone.
    constant: lambda = 1 - weight (``weight`` is the teacher's share; 1.0 is pure distillation).
    cosine: lambda = (1 - cos(pi * progress)) / 2, slower at both ends.
    step: teacher only before ``step_at`` of training, gold only after.
    """
    progress = step / (total_steps - 1) if total_steps > 1 else 1.0
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "anneal":
        return progress
    if schedule == "constant":
        return 1.0 - weight
    if schedule == "cosine":
        return (1.0 - math.cos(math.pi * progress)) / 2.0
    if schedule == "step":
        return 0.0 if progress < step_at else 1.0
    raise ValueError(f"unknown distillation schedule {schedule!r}")


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
