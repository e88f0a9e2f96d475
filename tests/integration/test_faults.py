"""Numerical faults: a non-finite loss stops the run naming the step, the task and the last good
checkpoint, without writing weights over good ones; or, when configured, the step is skipped."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

import bamkd.train as train_module
from bamkd.config import build_config
from bamkd.runtime.checkpoint import list_checkpoints
from bamkd.train import NonFiniteLossError, train


def _config(demo_suite, out, *extra):
    tasks = ["demo_sentiment", "demo_rating"]
    return build_config(
        "tiny",
        [
            f"data.task_files=[{','.join(demo_suite[t] for t in tasks)}]",
            f"data.tasks=[{','.join(tasks)}]",
            "data.train_limit=32",
            "data.eval_limit=16",
            "train.epochs=2",
            "train.batch_size=16",
            "train.checkpoint_every=2",
            f"output_dir={out}",
            *extra,
        ],
    )


@pytest.fixture
def nan_at_step_5(monkeypatch):
    """Make the rating task's loss NaN on the sixth optimiser step (step index 5)."""
    original = train_module.batch_loss
    calls = {"n": 0}

    def poisoned(outputs, batch, tasks, lam):
        total, sums, counts = original(outputs, batch, tasks, lam)
        calls["n"] += 1
        if calls["n"] == 6:
            rating = [t.spec.name for t in tasks].index("demo_rating")
            sums = sums.clone()
            sums[rating] = float("nan")
            total = total * float("nan")
        return total, sums, counts

    monkeypatch.setattr(train_module, "batch_loss", poisoned)


def test_nonfinite_loss_stops_and_names_step_task_checkpoint(demo_suite, tmp_path, nan_at_step_5):
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as err:
        train(_config(demo_suite, out))
    message = str(err.value)
    assert "loss became non-finite at step 5 (task demo_rating)" in message
    assert f"Last good checkpoint: {out / 'checkpoints' / 'step-00000004'}" in message
    assert "train.on_nonfinite=skip" in message
    assert not (out / "model").exists()
    good = load_file(str(list_checkpoints(out)[-1] / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in good.values())


def test_nonfinite_step_is_skipped_when_configured(demo_suite, tmp_path, nan_at_step_5, caplog):
    out = tmp_path / "run"
    metrics = train(_config(demo_suite, out, "train.on_nonfinite=skip"))
    assert "skipping step 5: non-finite loss (task demo_rating)" in caplog.text
    weights = load_file(str(out / "model" / "bamkd_model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert math.isfinite(metrics["demo_sentiment"]["accuracy"])
