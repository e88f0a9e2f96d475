"""Two processes (torchrun, gloo on CPU) train, evaluate and teach like one process.

Dropout is off so that both layouts compute the same function; the global batch is the same and
each process takes a share of it, so the weights agree up to the order of floating-point sums.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from bamkd.cli import main
from bamkd.teachers import read_teacher_predictions

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="this torch build has no torch.distributed"
)


def _args(demo_suite, out: Path) -> list[str]:
    tasks = ["demo_sentiment", "demo_rating", "demo_agreement"]
    return [
        "train",
        "--config",
        "tiny",
        f"data.task_files=[{','.join(demo_suite[t] for t in tasks)}]",
        f"data.tasks=[{','.join(tasks)}]",
        "data.train_limit=40",
        "data.eval_limit=30",
        "train.epochs=2",
        "train.batch_size=16",
        "model.dropout=0.0",
        "model.encoder_dropout=0.0",
        f"output_dir={out}",
    ]


def _torchrun(*args: str, script: Path | None = None, check: bool = True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += [str(script)] if script else ["-m", "bamkd.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


# Process 0 alone receives SIGTERM, in the forward pass of step index 4.
SIGNAL_RANK_0 = """
import os, signal, sys
from bamkd.cli import main
from bamkd.model import MultiTaskModel

if os.environ["RANK"] == "0":
    original, calls = MultiTaskModel.forward, [0]
    def patched(self, *a, **k):
        calls[0] += 1
        if calls[0] == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *a, **k)
    MultiTaskModel.forward = patched
sys.exit(main(sys.argv[1:]))
"""


def test_a_stop_request_to_one_process_stops_both_after_the_same_step(demo_suite, tmp_path):
    out = tmp_path / "run"
    script = tmp_path / "signal_rank_0.py"
    script.write_text(SIGNAL_RANK_0)
    proc = _torchrun(*_args(demo_suite, out), script=script, check=False)
    assert proc.returncode != 0
    # Both processes report the same stop (the other one did not receive the signal itself).
    assert proc.stderr.count("stopped by SIGTERM after step 5 of") == 2, proc.stderr[-3000:]
    from bamkd.runtime.checkpoint import latest_checkpoint

    found = latest_checkpoint(out)
    assert found is not None and found.state.step == 5
    assert len(list(found.folder.glob("rng-rank*.safetensors"))) == 2
    assert not (out / "model").exists()

    _torchrun(*_args(demo_suite, out), "--resume")
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["finished"] and state["world_size"] == 2


def test_two_processes_train_evaluate_and_teach_like_one(demo_suite, tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(_args(demo_suite, one)) == 0
    _torchrun(*_args(demo_suite, two))

    state_one = json.loads((one / "trainer_state.json").read_text())
    state_two = json.loads((two / "trainer_state.json").read_text())
    assert state_two["world_size"] == 2
    assert state_one["total_steps"] == state_two["total_steps"]
    assert state_one["examples_seen"] == state_two["examples_seen"]

    w1 = load_file(str(one / "model" / "bamkd_model.safetensors"))
    w2 = load_file(str(two / "model" / "bamkd_model.safetensors"))
    worst = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    assert worst < 1e-4, f"largest weight difference {worst}"

    # Only the main process writes: one metrics log, with one line per logged step.
    steps = [json.loads(x)["step"] for x in (two / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == len(set(steps)) + 1  # every step once, plus the final dev line

    # Sharded evaluation of the same saved model gives the single-process metrics.
    capsys.readouterr()
    assert main(["evaluate", str(two), "--json"]) == 0
    single = json.loads(capsys.readouterr().out)
    sharded = _json_tail(_torchrun("evaluate", str(two), "--json").stdout)
    for task, values in single.items():
        for key, value in values.items():
            assert sharded[task][key] == pytest.approx(value, abs=1e-6)

    # Sharded teacher predictions equal single-process ones, row by row, ids included.
    copy = tmp_path / "two-copy"
    shutil.copytree(two, copy)
    assert main(["teach", str(two)]) == 0
    _torchrun("teach", str(copy))
    for task in ("demo_sentiment", "demo_rating", "demo_agreement"):
        a, b = read_teacher_predictions(two, task), read_teacher_predictions(copy, task)
        assert a.ids == b.ids
        np.testing.assert_allclose(a.outputs, b.outputs, atol=1e-5)


def _json_tail(stdout: str) -> dict:
    """The JSON object printed last (both processes print; the objects are equal)."""
    start = stdout.rindex("\n{") + 1 if "\n{" in stdout else stdout.index("{")
    return json.loads(stdout[start:])


def test_an_experiment_under_torchrun_trains_every_run_and_measures_together(demo_suite, tmp_path):
    """One sitting of two processes: the processes take the same decisions (a run's lock is
    held by the main process only, so the sharing between sittings is off), and the inference
    speed, timed by both processes together, is measured."""
    tasks = ["demo_sentiment", "demo_rating"]
    spec = {
        "name": "ddp",
        "output_dir": str(tmp_path / "out"),
        "tasks": tasks,
        "seeds": [0],
        "variants": ["single", "bam"],
        "base": {
            "model": {"name_or_path": "bamkd-tiny"},
            "data": {
                "task_files": [demo_suite[t] for t in tasks],
                "train_limit": 40,
                "eval_limit": 30,
            },
            "train": {"epochs": 1, "batch_size": 16},
        },
        "speed": {"limit": 16, "repeats": 1},
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(json.dumps(spec))
    proc = _torchrun("run", str(path))
    assert "3 trained now" in proc.stdout
    runs = tmp_path / "out" / "runs"
    for run in ("single/demo_sentiment/seed0", "single/demo_rating/seed0", "bam/seed0"):
        assert json.loads((runs / run / "trainer_state.json").read_text())["world_size"] == 2
        assert (runs / run / "speed.json").is_file()
