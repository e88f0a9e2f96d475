#!/usr/bin/env python
"""How loudly each task speaks to the shared encoder in a multi-task batch.

In a summed multi-task loss, a task whose loss is numerically small (STS-B's squared error on the
0-1 scale) may move the shared encoder little. Loss values alone do not settle it: what reaches
the encoder is the gradient. For a trained (or freshly initialised) multi-task run, this script
takes the run's own training batches and, for each task, back-propagates that task's share of
the batch loss exactly as training weights it (task loss weights, the teacher mix at that step,
the run's loss reduction), then measures

- the norm of the gradient on the encoder's parameters from the task's rows of the batch,
- that norm per row of the task,
- its cosine with the gradient of the whole batch (how much of the update goes the task's way).

Dropout is off (``model.eval()``) so the numbers are repeatable; everything runs in fp32.
Model states: ``init`` (the run's seeded initialisation), ``final`` (its saved model), or a
checkpoint folder (``step-00004200`` in the run's checkpoints, or a path to a copy of one).
Nothing in the run folder or its teachers' folders is written: the context is built in a
scratch folder from the run's saved config (tokenized data goes to the usual cache), and a
distilled run's teacher predictions must exist.

Example (the faithful study's Multi seed 0 at initialisation, near the end and at the end; about
three minutes on one thread):
    cd benchmarks && python task_gradients.py ../experiments/paper_faithful/runs/multi/seed0 \
        --states init step-00004200 final --batches 8 --out results/task_gradients_multi.json
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import result_files
import tables
import torch
from safetensors.torch import load_file

from bamkd.config import RunConfig, from_dict, load_yaml
from bamkd.losses import batch_loss, gold_weights, loss_scale
from bamkd.runtime.runs import CONFIG_NAME
from bamkd.teachers import predictions_path
from bamkd.train import micro_batches, model_inputs, setup


def _checkpoint(run: Path, state: str) -> Path:
    """A checkpoint folder: a name in the run's checkpoints, or a path (a copy kept elsewhere)."""
    return Path(state) if "/" in state else run / "checkpoints" / state


def _state_dict_path(run: Path, state: str) -> Path:
    """The weights file of ``final`` or a checkpoint; exits naming it when it is missing."""
    path = (
        run / "model" / "bamkd_model.safetensors"
        if state == "final"
        else _checkpoint(run, state) / "model.safetensors"
    )
    if not path.is_file():
        raise SystemExit(f"{path} does not exist; name init, final or a checkpoint folder")
    return path


def _state_dict(run: Path, state: str) -> dict[str, torch.Tensor] | None:
    """The weights of ``state`` in ``run``; None for ``init`` (the seeded initialisation)."""
    return None if state == "init" else load_file(_state_dict_path(run, state))


def _step_of(run: Path, state: str, total_steps: int) -> int:
    """The training step a state was saved at (its trainer state for a checkpoint)."""
    if state == "init":
        return 0
    if state == "final":
        return total_steps
    return int(json.loads((_checkpoint(run, state) / "trainer_state.json").read_text())["step"])


def _encoder_grad(model: torch.nn.Module) -> torch.Tensor:
    """The encoder's gradient as one flat vector (zeros where a parameter got none)."""
    return torch.cat(
        [
            (p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
            for p in model.encoder.parameters()
        ]
    )


def task_gradient_vectors(ctx: Any, rows: np.ndarray, lam: torch.Tensor) -> dict[str, Any]:
    """Per task with rows in ``rows``: (its row count, the encoder gradient of its share of the
    batch loss as one flat vector), the loss scaled as training scales it (``loss_scale``: the
    batch's sum, or its mean over all of ``rows``). The vectors add up to the gradient training
    takes from the whole batch."""
    scale = loss_scale(ctx.cfg.train.loss_reduction, 1, len(rows), len(rows))
    model = ctx.raw_model
    task_of = ctx.store.task_ids[rows]
    out: dict[str, Any] = {}
    for t, info in enumerate(ctx.tasks):
        mine = rows[task_of == t]
        if len(mine) == 0:
            continue
        model.zero_grad(set_to_none=True)
        for host in micro_batches(ctx, mine):
            outputs = model(**model_inputs(host))
            loss, _, _ = batch_loss(outputs, host, ctx.tasks, lam)
            (loss * scale).backward()
        out[info.spec.name] = (len(mine), _encoder_grad(model).clone())
    model.zero_grad(set_to_none=True)
    return out


def _task_gradients(ctx: Any, rows: np.ndarray, lam: torch.Tensor) -> dict[str, Any]:
    """Per task: its rows in ``rows``, the norm of its encoder gradient and that gradient's
    cosine with the whole batch's."""
    vectors = task_gradient_vectors(ctx, rows, lam)
    whole = sum(g for _, g in vectors.values())
    out = {}
    for info in ctx.tasks:
        name = info.spec.name
        if name not in vectors:
            out[name] = {"rows": 0, "norm": 0.0, "cosine_with_batch": math.nan}
            continue
        count, g = vectors[name]
        out[name] = {
            "rows": count,
            "norm": float(g.norm()),
            "cosine_with_batch": float(torch.nn.functional.cosine_similarity(g, whole, dim=0)),
        }
    return out


def check_inputs(run: Path, states: list[str]) -> None:
    """Every state's weights exist, and a distilled run's teacher predictions too (``setup``
    would otherwise write them into the teachers' folders), before any setup."""
    for state in states:
        if state != "init":
            _state_dict_path(run, state)
    saved = from_dict(RunConfig, load_yaml(run / CONFIG_NAME))
    for task, teachers in saved.distill.teachers.items():
        for teacher in teachers:
            if not predictions_path(Path(teacher), task).is_file():
                raise SystemExit(
                    f"{predictions_path(Path(teacher), task)} does not exist; write it first "
                    f"(bamkd teach {teacher} --tasks {task})"
                )


def measure_state(run: Path, state: str, batches: int, work: Path) -> dict[str, Any]:
    """Per-task gradients of ``batches`` training batches at one model state of ``run``."""
    check_inputs(run, [state])
    saved = from_dict(RunConfig, load_yaml(run / CONFIG_NAME))
    scratch = Path(tempfile.mkdtemp(dir=work)) / "run"
    cfg = from_dict(
        RunConfig,
        {
            **saved.to_dict(),
            "output_dir": str(scratch),
            "train": {**saved.to_dict()["train"], "mixed_precision": "no", "progress": False},
        },
    )
    with setup(cfg) as ctx:
        weights = _state_dict(run, state)
        if weights is not None:
            ctx.raw_model.load_state_dict(weights)
        ctx.raw_model.eval()
        step = _step_of(run, state, ctx.total_steps)
        lam = gold_weights(ctx.tasks, step, ctx.total_steps, cfg.distill.step_at)
        # Batches spread over the first epoch: the same mixture the run trained on.
        picks = np.linspace(0, ctx.plan.batches_per_epoch - 1, batches).astype(int)
        per_batch = [_task_gradients(ctx, ctx.plan.rows_at(int(k)), lam) for k in picks]
        weights_used = {info.spec.name: info.loss_weight for info in ctx.tasks}
    shutil.rmtree(scratch.parent, ignore_errors=True)
    return {"state": state, "step": step, "loss_weights": weights_used, "batches": per_batch}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished or checkpointed multi-task run folder")
    parser.add_argument("--states", nargs="+", default=["init", "final"])
    parser.add_argument("--batches", type=int, default=8, help="training batches per state")
    parser.add_argument("--out", type=Path, default=Path("results/task_gradients.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    check_inputs(args.run.resolve(), args.states)
    work = Path(tempfile.mkdtemp(prefix="bamkd-task-gradients-"))
    try:
        results = [measure_state(args.run.resolve(), s, args.batches, work) for s in args.states]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    payload = {**result_files.header(), "run": str(args.run), "results": results}
    result_files.write_json(args.out, payload, announce=True)
    print("\n".join(tables.task_gradient_tables(payload)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
