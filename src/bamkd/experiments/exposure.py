"""How much training each task gets in a run: passes over its data and updates that see it.

Two multi-task runs can share every formula and still train a task very differently: |D|^0.75
multiples computed from a subset's sizes collapse to 1, halving the epochs halves every pass,
and length-grouped batches leave many steps without a given task. The report states these
numbers per task and variant so a comparison says what each model was actually given. They are
computed from the run's saved config and its batch plan (the plan is a pure function of the
config and the data), so they hold for runs trained by any bamkd version with the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bamkd.config import RunConfig
from bamkd.data import load_training_split
from bamkd.model import load_tokenizer
from bamkd.runtime.runs import task_specs
from bamkd.sampling import BatchPlan, make_task_weighting


@dataclass(frozen=True)
class TaskExposure:
    """One task's share of one run's training."""

    rows: int
    """Training examples loaded (after limits and sentence-swap doubling)."""
    copies_per_epoch: int
    loss_weight: float
    passes: float
    """Examples of the task trained on, over ``rows``: copies per epoch times epochs."""
    steps_with_task: int
    """Optimiser steps whose batch holds at least one example of the task."""
    steps: int


def task_exposure(cfg: RunConfig) -> dict[str, TaskExposure]:
    """Per task of ``cfg``, what its batch plan gives it over the whole run."""
    d, t = cfg.data, cfg.train
    specs = task_specs(d)
    tokenizer = load_tokenizer(cfg.model.tokenizer or cfg.model.name_or_path)
    parts = [load_training_split(spec, d, tokenizer) for spec in specs.values()]
    sizes = {p.task: len(p) for p in parts}
    weighting = make_task_weighting(
        t.task_weighting, sizes, t.weighting_exponent, t.sampling_temperature, t.task_multiples
    )
    lengths = np.concatenate([p.lengths for p in parts])
    plan = BatchPlan(sizes, weighting, t.batch_size, t.seed, lengths, d.length_grouped)
    steps = plan.total_steps(t.epochs)
    seen = np.zeros(len(sizes), dtype=np.int64)
    with_task = np.zeros(len(sizes), dtype=np.int64)
    batches, batches_epoch = [], -1
    for step in range(steps):
        epoch, index = divmod(step, plan.batches_per_epoch)
        if epoch != batches_epoch:
            batches, batches_epoch = plan.epoch_batches(epoch), epoch
        counts = np.bincount(plan.task_index(batches[index]), minlength=len(sizes))
        seen += counts
        with_task += counts > 0
    return {
        task: TaskExposure(
            rows=sizes[task],
            copies_per_epoch=weighting.multiples[task],
            loss_weight=weighting.loss_weights[task],
            passes=float(seen[i] / sizes[task]),
            steps_with_task=int(with_task[i]),
            steps=steps,
        )
        for i, task in enumerate(sizes)
    }
