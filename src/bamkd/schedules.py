"""The distillation schedules, one registry: how the gold-label weight lambda moves in training.

``distill.schedule`` (and ``distill.per_task.<task>.schedule``) accept exactly the names in
`SCHEDULES`; the config checks them against it, `gold_weight` computes lambda from it, and the
README's list is tested against it. Each schedule is a pure function of training progress in
[0, 1] that a reader can check against BAM_SPEC.md. Adding a schedule is one entry here.

This module imports nothing heavy, so the config (which sits below the losses) can read it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """One way of mixing gold labels and teacher outputs over training."""

    name: str
    what: str
    """One line for the README and the docs of ``distill.schedule``."""
    lam: Callable[[float, float, float], float]
    """lambda(progress, weight, step_at): the weight on the gold label, in [0, 1]."""


def _anneal(progress: float, weight: float, step_at: float) -> float:
    # BAM_SPEC: lambda grows linearly from 0 to 1, recomputed every step, ignoring warmup.
    return progress


def _constant(progress: float, weight: float, step_at: float) -> float:
    # ``weight`` is the teacher's share; 1.0 is pure distillation.
    return 1.0 - weight


def _cosine(progress: float, weight: float, step_at: float) -> float:
    return (1.0 - math.cos(math.pi * progress)) / 2.0


def _step(progress: float, weight: float, step_at: float) -> float:
    return 0.0 if progress < step_at else 1.0


SCHEDULES: dict[str, Schedule] = {
    s.name: s
    for s in (
        Schedule(
            "anneal", "λ = step/(total−1), the paper: 0 at the first step, 1 at the last", _anneal
        ),
        Schedule("constant", "a fixed teacher weight `distill.weight` (λ = 1 − weight)", _constant),
        Schedule("cosine", "λ = (1 − cos(π·progress))/2, slower at both ends", _cosine),
        Schedule("step", "teacher only until `distill.step_at` of training, gold after", _step),
    )
}
"""Every schedule by the name ``distill.schedule`` uses."""

SCHEDULE_NAMES: tuple[str, ...] = tuple(SCHEDULES)


def progress_at(step: int, total_steps: int) -> float:
    """Training progress of optimiser step ``step`` (0-based): step / (total_steps - 1), clipped
    to [0, 1], so the last step has progress 1 (it trains on gold alone under annealing)."""
    progress = step / (total_steps - 1) if total_steps > 1 else 1.0
    return min(max(progress, 0.0), 1.0)


def gold_weight(
    schedule: str, step: int, total_steps: int, weight: float = 0.5, step_at: float = 0.5
) -> float:
    """Weight lambda on the gold label at optimiser step ``step`` (0-based) of ``total_steps``.

    Raises:
        ValueError: ``schedule`` is not in `SCHEDULES`.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown distillation schedule {schedule!r}")
    return SCHEDULES[schedule].lam(progress_at(step, total_steps), weight, step_at)


def markdown_list() -> str:
    """The README's list of schedules (tests/unit/test_registries.py keeps the README current)."""
    return "\n".join(f"- `{s.name}`: {s.what}" for s in SCHEDULES.values())
