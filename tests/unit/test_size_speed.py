"""The report's size and speed table on hand-made finished runs: stored speeds are read, never
measured; sizes come from the saved weights' header; older runs without a speed show a dash."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from safetensors.numpy import save_file

from bamkd.experiments.report import report_path, write_experiment_report
from bamkd.experiments.speed import (
    SPEED_NAME,
    SpeedSettings,
    measure_missing,
    read_speed,
    saved_size,
)

SETTINGS = {"batch_size": 64, "repeats": 3, "precision": "no", "threads": 1, "limit": None}


def _run(
    root: Path,
    run_id: str,
    variant: str,
    scores: dict[str, float],
    *,
    layers: int,
    width: int,
    minutes: float,
    speed: tuple[int, float] | None,
    size: str | None = None,
    seed: int = 0,
) -> SimpleNamespace:
    """A finished run folder: state, dev metrics, a saved model of ``layers`` x (width x width)
    weights plus one head per task, and optionally a stored speed (examples, seconds)."""
    folder = root / run_id
    (folder / "model").mkdir(parents=True)
    (folder / "trainer_state.json").write_text(
        json.dumps({"finished": True, "elapsed_seconds": 60 * minutes})
    )
    metrics = {task: {"accuracy": value} for task, value in scores.items()}
    (folder / "dev_metrics.json").write_text(json.dumps(metrics))
    record = {
        "step": 1,
        "loss": dict.fromkeys(scores, 0.5),
        "lambda": dict.fromkeys(scores, 1.0),
        "lr": 1e-3,
    }
    (folder / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    tensors = {f"encoder.layer.{i}.w": np.zeros((width, width), np.float32) for i in range(layers)}
    tensors.update({f"heads.{t}.weight": np.zeros((2, width), np.float32) for t in scores})
    save_file(tensors, str(folder / "model" / "bamkd_model.safetensors"))
    (folder / "model" / "config.json").write_text(json.dumps({"num_hidden_layers": layers}))
    if speed is not None:
        examples, seconds = speed
        record = {
            "examples": examples,
            "seconds": seconds,
            "settings": {**SETTINGS, "device": "cpu"},
        }
        (folder / SPEED_NAME).write_text(json.dumps(record))
    return SimpleNamespace(
        id=run_id, variant=variant, tasks=list(scores), seed=seed, folder=folder, size=size
    )


def _table(lines: list[str]) -> dict[str, list[str]]:
    start = next(i for i, line in enumerate(lines) if line.startswith("Size and speed"))
    rows = {}
    for line in lines[start + 4 :]:
        if not line.startswith("| "):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def _experiment(tmp_path: Path) -> tuple[SimpleNamespace, list[SimpleNamespace]]:
    root = tmp_path / "runs"
    runs = [
        # Teachers: 6 layers of 10 x 10, one per task, 100 dev examples/s together.
        _run(root, "single/a/seed0", "single", {"a": 0.8}, layers=6, width=10, minutes=2,
             speed=(50, 0.5)),
        _run(root, "single/b/seed0", "single", {"b": 0.6}, layers=6, width=10, minutes=3,
             speed=(150, 1.5)),
        # Full-size Multi trained before speed was measured: no speed.json.
        _run(root, "multi/seed0", "multi", {"a": 0.7, "b": 0.5}, layers=6, width=10, minutes=4,
             speed=None),
        # Smaller students of two seeds: 3 layers; 400 and 500 examples/s (median 450).
        _run(root, "bam_small/l3/seed0", "bam_small", {"a": 0.75, "b": 0.45}, layers=3,
             width=10, minutes=1, speed=(200, 0.5), size="l3"),
        _run(root, "bam_small/l3/seed1", "bam_small", {"a": 0.65, "b": 0.55}, layers=3,
             width=10, minutes=3, speed=(200, 0.4), size="l3", seed=1),
    ]  # fmt: skip
    exp = SimpleNamespace(
        name="sizes", output_dir=str(tmp_path / "exp"), tasks=["a", "b"], student_sizes=["l3"]
    )
    return exp, runs


def test_the_table_sets_quality_beside_size_training_time_and_stored_speed(tmp_path):
    exp, runs = _experiment(tmp_path)
    lines = write_experiment_report(exp, runs)
    rows = _table(lines)
    assert list(rows) == ["Single", "Multi", "BAM small (l3)"]
    # models, layers, parameters (6 x 100 + heads 2 x 10 per task), training minutes, speed,
    # Avg, share of Single's Avg, speed-up over Single.
    assert rows["Single"] == ["2", "6", "1.2k", "5.0", "100.0", "70.0", "-", "-"]
    assert rows["Multi"] == ["1", "6", "0.6k", "4.0", "-", "60.0", "85.7%", "-"]
    assert rows["BAM small (l3)"] == ["1", "3", "0.3k", "2.0", "450.0", "60.0", "85.7%", "4.50x"]
    note = lines[
        lines.index(next(x for x in lines if x.startswith("| BAM small (l3) | 1 | 3"))) + 2
    ]
    assert "batch size 64" in note and "fp32" in note and "1 thread(s) on cpu" in note
    assert "median of 3 timed passes" in note
    assert "-: not measured" in note and "--measure-speed" in note
    # The plain statement for each smaller BAM student.
    assert (
        "BAM small (l3) keeps 85.7% of its single-task teachers' average dev score and predicts "
        "4.50x as many dev examples per second, with 0.3k parameters in one 3-layer model "
        "against 1.2k in 2 models of 6 layers."
    ) in lines


def test_a_seed_counts_only_once_all_its_runs_finished(tmp_path):
    """Single seed 1 has one of its two teachers finished: its cost would be half a Single's
    and its speed that of one task, so it must not enter the medians (the scores skip it too)."""
    exp, runs = _experiment(tmp_path)
    root = tmp_path / "runs"
    done = _run(root, "single/a/seed1", "single", {"a": 0.8}, layers=6, width=10, minutes=9,
                speed=(900, 0.1), seed=1)  # fmt: skip
    unfinished = _run(root, "single/b/seed1", "single", {"b": 0.6}, layers=6, width=10,
                      minutes=9, speed=None, seed=1)  # fmt: skip
    (unfinished.folder / "trainer_state.json").write_text(json.dumps({"finished": False}))
    rows = _table(write_experiment_report(exp, [*runs, done, unfinished]))
    assert rows["Single"] == ["2", "6", "1.2k", "5.0", "100.0", "70.0", "-", "-"]


def test_saved_size_reads_the_header_and_speed_reads_only_usable_files(tmp_path):
    _, runs = _experiment(tmp_path)
    assert saved_size(runs[0].folder) == (6 * 100 + 20, 6)
    assert saved_size(tmp_path / "nowhere") is None
    assert read_speed(runs[2].folder) is None
    (runs[0].folder / SPEED_NAME).write_text("{broken")
    assert read_speed(runs[0].folder) is None
    (runs[0].folder / SPEED_NAME).write_text(json.dumps({"examples": 5, "seconds": 0}))
    assert read_speed(runs[0].folder) is None
    (runs[0].folder / SPEED_NAME).write_text(json.dumps({"examples": 5, "seconds": None}))
    assert read_speed(runs[0].folder) is None
    (runs[0].folder / SPEED_NAME).write_text(json.dumps({"examples": "5", "seconds": 1}))
    assert read_speed(runs[0].folder) is None


def test_bamkd_report_reads_an_older_plan_without_sizes_or_speeds(tmp_path):
    """plan.json and runs from before smaller students: no size, no speed settings, no
    speed.json, a damaged speed file; the report is written with dashes."""
    exp, runs = _experiment(tmp_path)
    (runs[0].folder / SPEED_NAME).write_text("{broken")
    out = tmp_path / "exp"
    out.mkdir()
    plan = {
        "experiment": {"name": "old", "output_dir": str(out), "tasks": ["a", "b"], "seeds": [0]},
        "runs": [
            {"id": r.id, "variant": r.variant, "tasks": r.tasks, "seed": r.seed,
             "folder": str(r.folder), "deps": []}
            for r in runs
            if r.size is None
        ],
    }  # fmt: skip
    (out / "plan.json").write_text(json.dumps(plan))
    rows = _table(report_path(out))
    # One teacher's speed is unreadable, so the teachers' row has none, and no speed-up shows.
    assert rows["Single"][4] == "-" and rows["Multi"][4] == "-"
    assert (out / "report" / "results.md").is_file()


def test_a_run_that_cannot_be_measured_is_skipped_with_a_warning(tmp_path, caplog):
    _, runs = _experiment(tmp_path)
    assert measure_missing([runs[2].folder], SpeedSettings(repeats=1)) == []
    assert "no inference speed for" in caplog.text
    assert not (runs[2].folder / SPEED_NAME).exists()
