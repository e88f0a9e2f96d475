"""benchmarks/task_gradients.py: per-task encoder gradients of a multi-task run's batches.

On the tiny three-task run (two classification tasks, one regression task): each task's gradient
vector is that task's share of the batch, so the vectors add up to the gradient of the whole
batch loss; the summary reads the run's saved model (``final`` differs from ``init``); and the
run folder is left exactly as it was.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def task_gradients():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import task_gradients

        yield task_gradients
    finally:
        sys.path.remove(str(BENCHMARKS))


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_task_gradients_add_up_to_the_batch_gradient(task_gradients, tiny_run, tmp_path):
    from bamkd.config import RunConfig, from_dict, load_yaml
    from bamkd.losses import batch_loss, gold_weights
    from bamkd.train import micro_batches, model_inputs, setup

    saved = from_dict(RunConfig, load_yaml(tiny_run / "config.yaml")).to_dict()
    saved["output_dir"] = str(tmp_path / "scratch")
    cfg = from_dict(RunConfig, saved)
    with setup(cfg) as ctx:
        ctx.raw_model.eval()
        rows = ctx.plan.rows_at(0)
        lam = gold_weights(ctx.tasks, 0, ctx.total_steps, cfg.distill.step_at)
        parts = task_gradients.task_gradient_vectors(ctx, rows, lam)
        assert len(parts) >= 2  # a mixed batch
        ctx.raw_model.zero_grad(set_to_none=True)
        for host in micro_batches(ctx, rows):
            loss, _, _ = batch_loss(ctx.raw_model(**model_inputs(host)), host, ctx.tasks, lam)
            loss.backward()
        whole = task_gradients._encoder_grad(ctx.raw_model)
    summed = sum(g for _, g in parts.values())
    assert sum(n for n, _ in parts.values()) == len(rows)
    torch.testing.assert_close(summed, whole, rtol=1e-4, atol=1e-6)


def test_measure_reads_the_saved_model_and_writes_nothing_in_the_run(
    task_gradients, tiny_run, tmp_path
):
    before = _digest(tiny_run)
    init = task_gradients.measure_state(tiny_run, "init", 2, tmp_path)
    final = task_gradients.measure_state(tiny_run, "final", 2, tmp_path)
    assert _digest(tiny_run) == before
    assert init["step"] == 0 and final["step"] > 0
    tasks = list(init["loss_weights"])
    assert set(init["batches"][0]) == set(tasks) and len(init["batches"]) == 2
    norms = [(init["batches"][0][t]["norm"], final["batches"][0][t]["norm"]) for t in tasks]
    assert all(a > 0 and b > 0 for a, b in norms if a)
    assert any(abs(a - b) > 1e-6 for a, b in norms)  # the trained weights were loaded
