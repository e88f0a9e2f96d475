"""Exact resume: a run killed with SIGKILL (after a checkpoint, in the middle of a step, or in
the middle of writing a checkpoint), or asked to stop with SIGTERM or Ctrl-C, and resumed ends
with the same weights and the same logged losses as a run that was never interrupted (CPU, fp32)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bamkd.config import build_config
from bamkd.runtime.checkpoint import latest_checkpoint, list_checkpoints
from bamkd.train import train

KILLER = textwrap.dedent(
    """
    import os, signal, sys
    mode, n, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if mode == "after_checkpoint":
        import bamkd.runtime.checkpoint as ck
        original = ck.save_checkpoint
        def patched(folder, *a, **k):
            original(folder, *a, **k)
            if int(folder.name.split("-")[1]) >= n:
                die()
        ck.save_checkpoint = patched
    elif mode == "during_checkpoint":
        import bamkd.runtime.checkpoint as ck
        original = ck.save_file
        def patched(tensors, path, metadata=None):
            if f"step-{n:08d}" in str(path) and "optimizer" in str(path):
                with open(path, "wb") as f:  # half a file, then the kill
                    f.write(b"partial")
                die()
            return original(tensors, path, metadata=metadata)
        ck.save_file = patched
    elif mode in ("mid_step", "SIGTERM", "SIGINT"):
        # In the n-th forward pass: killed, or asked to stop as a scheduler or Ctrl-C does.
        from bamkd.model import MultiTaskModel
        original = MultiTaskModel.forward
        calls = [0]
        def patched(self, *a, **k):
            calls[0] += 1
            if calls[0] == n:
                die() if mode == "mid_step" else os.kill(os.getpid(), getattr(signal, mode))
            return original(self, *a, **k)
        MultiTaskModel.forward = patched
    from bamkd.cli import main
    sys.exit(main(args))
    """
)


def _overrides(demo_suite, out: Path) -> list[str]:
    tasks = ["demo_sentiment", "demo_rating", "demo_agreement"]
    return [
        f"data.task_files=[{','.join(demo_suite[t] for t in tasks)}]",
        f"data.tasks=[{','.join(tasks)}]",
        "data.train_limit=48",
        "data.eval_limit=24",
        "train.epochs=2",
        "train.batch_size=16",
        "train.checkpoint_every=3",
        "train.keep_checkpoints=2",
        "train.log_every=1",
        f"output_dir={out}",
    ]


def _losses(run: Path) -> list[tuple]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [
        (r["step"], r["lr"], tuple(sorted(r["loss"].items())), tuple(sorted(r["lambda"].items())))
        for r in records
        if "loss" in r
    ]


@pytest.fixture(scope="module")
def reference(demo_suite, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    train(build_config("tiny", _overrides(demo_suite, out)))
    return out


@pytest.mark.parametrize(
    ("mode", "n"),
    [("after_checkpoint", 3), ("mid_step", 11), ("during_checkpoint", 15)],
)
def test_killed_run_resumes_to_identical_weights(demo_suite, tmp_path, reference, mode, n):
    out = tmp_path / "run"
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    args = ["train", "--config", "tiny", *_overrides(demo_suite, out)]
    proc = subprocess.run(
        [sys.executable, str(script), mode, str(n), *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not (out / "model").exists()
    steps = [int(p.name.split("-")[1]) for p in list_checkpoints(out)]
    assert steps, "the killed run left no checkpoint"
    if mode == "during_checkpoint":
        # The half-written checkpoint never appears under its final name; the previous one loads.
        assert max(steps) == n - 3
        assert any(p.name.startswith(f".step-{n:08d}.tmp") for p in (out / "checkpoints").iterdir())
        assert latest_checkpoint(out).state.step == n - 3

    train(build_config("tiny", _overrides(demo_suite, out)), resume=True)

    expected = load_file(str(reference / "model" / "bamkd_model.safetensors"))
    got = load_file(str(out / "model" / "bamkd_model.safetensors"))
    assert expected.keys() == got.keys()
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert different == []
    assert _losses(out) == _losses(reference)
    assert json.loads((out / "dev_metrics.json").read_text()) == json.loads(
        (reference / "dev_metrics.json").read_text()
    )


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_stop_request_checkpoints_the_current_step_and_resumes_exactly(
    demo_suite, tmp_path, reference, signame
):
    out = tmp_path / "run"
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    args = ["train", "--config", "tiny", *_overrides(demo_suite, out)]
    # The signal arrives in the forward pass of step index 10; checkpoints are every 3 steps.
    proc = subprocess.run(
        [sys.executable, str(script), signame, "11", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
    )
    signum = getattr(signal, signame)
    assert proc.returncode == 128 + signum, proc.stderr[-2000:]
    assert f"stopped by {signame} after step 11 of" in proc.stderr
    assert "--resume" in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "model").exists()
    assert latest_checkpoint(out).state.step == 11  # the step it was in, not the last periodic one

    train(build_config("tiny", _overrides(demo_suite, out)), resume=True)
    expected = load_file(str(reference / "model" / "bamkd_model.safetensors"))
    got = load_file(str(out / "model" / "bamkd_model.safetensors"))
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert _losses(out) == _losses(reference)


def test_damaged_latest_checkpoint_is_named_and_skipped(demo_suite, tmp_path, reference, caplog):
    out = tmp_path / "run"
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    args = ["train", "--config", "tiny", *_overrides(demo_suite, out)]
    proc = subprocess.run(
        [sys.executable, str(script), "after_checkpoint", "9", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL
    newest = list_checkpoints(out)[-1]
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated by a failing disk, say
    found = latest_checkpoint(out)
    assert found is not None and found.state.step == 6
    assert f"checkpoint {newest} is corrupted or truncated" in caplog.text
    train(build_config("tiny", _overrides(demo_suite, out)), resume=True)
    expected = load_file(str(reference / "model" / "bamkd_model.safetensors"))
    got = load_file(str(out / "model" / "bamkd_model.safetensors"))
    assert all(torch.equal(expected[k], got[k]) for k in expected)
