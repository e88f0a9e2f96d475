"""benchmarks/task_gradients.py: per-task encoder gradients of a multi-task run's batches.

On the tiny three-task run (two classification tasks, one regression task) and a BAM student of
it: each task's gradient vector is that task's share of the batch, so the vectors add up to the
gradient the training loop itself takes from the batch (its forward/backward, loss scale and
teacher mix at a step where lambda is strictly between 0 and 1, for both loss reductions); a
state given as a checkpoint folder is read from that folder; and neither the run folder nor
its teachers' folders change.
"""

from __future__ import annotations

import hashlib
import json
import shutil
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


@pytest.fixture(scope="module")
def bam_run(tiny_run, tmp_path_factory) -> Path:
    """A BAM student's run folder (config only: the script reads the config and weights), its
    teacher a copy of the tiny run with predictions written."""
    from bamkd.config import RunConfig, from_dict, load_yaml
    from bamkd.teach import teach

    root = tmp_path_factory.mktemp("bam")
    teacher = root / "teacher"
    shutil.copytree(tiny_run, teacher)
    saved = from_dict(RunConfig, load_yaml(tiny_run / "config.yaml")).to_dict()
    tasks = saved["data"]["tasks"]
    teach(teacher, tasks)
    saved["distill"]["teachers"] = {t: [str(teacher)] for t in tasks}
    saved["output_dir"] = str(root / "student")
    student = root / "student"
    student.mkdir()
    (student / "config.yaml").write_text(from_dict(RunConfig, saved).to_yaml())
    return student


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_task_gradients_add_up_to_the_training_loops_gradient(
    task_gradients, bam_run, tmp_path, reduction
):
    from bamkd.callbacks import Stopwatch
    from bamkd.config import RunConfig, from_dict, load_yaml
    from bamkd.losses import gold_weights, loss_scale
    from bamkd.steplog import LogWindow
    from bamkd.train import _forward_backward, setup

    saved = from_dict(RunConfig, load_yaml(bam_run / "config.yaml")).to_dict()
    saved["output_dir"] = str(tmp_path / "scratch")
    saved["train"]["loss_reduction"] = reduction
    cfg = from_dict(RunConfig, saved)
    with setup(cfg) as ctx:
        ctx.raw_model.eval()  # no dropout: both passes see the same network
        step = ctx.total_steps // 2
        rows = ctx.plan.rows_at(step)
        lam = gold_weights(ctx.tasks, step, ctx.total_steps, cfg.distill.step_at)
        assert all(0 < float(v) < 1 for v in lam) and all(t.has_teacher for t in ctx.tasks)
        parts = task_gradients.task_gradient_vectors(ctx, rows, lam)
        assert len(parts) >= 2  # a mixed batch
        ctx.raw_model.zero_grad(set_to_none=True)
        scale = loss_scale(reduction, 1, len(rows), len(rows))
        window = LogWindow([t.spec.name for t in ctx.tasks])
        _forward_backward(ctx, rows, lam, scale, window, Stopwatch())
        trained = task_gradients._encoder_grad(ctx.raw_model)
    summed = sum(g for _, g in parts.values())
    assert sum(n for n, _ in parts.values()) == len(rows)
    torch.testing.assert_close(summed, trained, rtol=1e-4, atol=1e-7)


def test_states_are_read_from_the_run_or_a_checkpoint_copy_and_nothing_is_written(
    task_gradients, tiny_run, bam_run, tmp_path
):
    teacher = bam_run.parent / "teacher"
    before = _digest(tiny_run), _digest(teacher)
    copy = tmp_path / "kept" / "step-00000003"
    copy.mkdir(parents=True)
    shutil.copy(tiny_run / "model" / "bamkd_model.safetensors", copy / "model.safetensors")
    (copy / "trainer_state.json").write_text(json.dumps({"step": 3, "total_steps": 9}))

    init = task_gradients.measure_state(tiny_run, "init", 2, tmp_path)
    final = task_gradients.measure_state(tiny_run, "final", 2, tmp_path)
    kept = task_gradients.measure_state(tiny_run, str(copy), 2, tmp_path)
    task_gradients.measure_state(bam_run, "init", 1, tmp_path)

    assert (_digest(tiny_run), _digest(teacher)) == before
    assert (init["step"], kept["step"]) == (0, 3) and final["step"] > 3
    tasks = list(init["loss_weights"])
    assert set(init["batches"][0]) == set(tasks) and len(init["batches"]) == 2
    norms = [(init["batches"][0][t]["norm"], final["batches"][0][t]["norm"]) for t in tasks]
    assert any(abs(a - b) > 1e-6 for a, b in norms)  # the trained weights were loaded
    # The copy holds the final weights; without teachers the step changes nothing else.
    assert kept["batches"] == final["batches"]


def test_a_missing_state_or_teacher_prediction_stops_before_any_setup(
    task_gradients, tiny_run, bam_run, tmp_path
):
    with pytest.raises(SystemExit, match="step-00000042/model.safetensors does not exist"):
        task_gradients.check_inputs(tiny_run, ["init", "step-00000042"])
    moved = bam_run.parent / "teacher" / "teacher_predictions"
    moved.rename(tmp_path / "away")
    try:
        with pytest.raises(SystemExit, match="bamkd teach"):
            task_gradients.check_inputs(bam_run, ["init"])
    finally:
        (tmp_path / "away").rename(moved)
