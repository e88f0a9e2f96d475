"""The report's tables over seeds and epochs, from hand-made finished runs' metrics logs: the
dev score after each epoch (per-epoch evaluations plus the final one, median over the seeds that
have them; rows without them left out, no table when no run has them), and the seed count of
the main table (a seed with some tasks still training is counted apart)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from bamkd.experiments.report import epoch_scores, write_experiment_report


def _run(
    root: Path,
    run_id: str,
    variant: str,
    seed: int,
    curves: dict[str, list[float]] | None,
    *,
    epochs: float | None = None,
):
    """A finished run of 10 steps an epoch; ``curves`` gives each task's accuracy after every
    epoch, the last one its final score (dev_metrics.json), None a run that evaluated only at
    the end. ``epochs`` (default: one per curve point) may be fractional."""
    folder = root / run_id
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"finished": True}))
    given = curves or {"cola": [0.5]}
    (folder / "dev_metrics.json").write_text(
        json.dumps({t: {"accuracy": c[-1]} for t, c in given.items()})
    )
    total = epochs if epochs is not None else len(next(iter(given.values())))
    last = round(10 * total)
    records = [
        {"step": last, "epoch": total, "loss": {"cola": 0.5}, "lambda": {"cola": 1.0}, "lr": 0.0}
    ]
    for e in range(len(next(iter(given.values()))) - 1 if curves else 0):
        records.append(
            {"step": 10 * (e + 1), "eval": {t: {"accuracy": c[e]} for t, c in given.items()}}
        )
    # The log's own final record; the table reads dev_metrics.json (bamkd evaluate rewrites it).
    records.append({"step": last, "dev": {t: {"accuracy": -1.0} for t in given}})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    tasks = list(given)
    return SimpleNamespace(
        id=run_id, variant=variant, seed=seed, folder=str(folder), size=None, tasks=tasks
    )


def _experiment(root: Path) -> SimpleNamespace:
    return SimpleNamespace(name="e", output_dir=str(root), tasks=["cola", "rte"], student_sizes={})


def test_epoch_scores_read_the_evaluations_then_the_final_one(tmp_path):
    run = _run(
        tmp_path, "multi/seed0", "multi", 0, {"cola": [0.2, 0.3, 0.25], "rte": [0.5, 0.6, 0.7]}
    )
    assert epoch_scores(Path(run.folder)) == {
        "cola": {1: 0.2, 2: 0.3, 3: 0.25},
        "rte": {1: 0.5, 2: 0.6, 3: 0.7},
    }
    quiet = _run(tmp_path, "multi/seed1", "multi", 1, None)
    assert epoch_scores(Path(quiet.folder)) == {}


def test_the_table_gives_the_median_over_seeds_per_epoch_and_skips_quiet_rows(tmp_path):
    runs = [
        _run(
            tmp_path, "multi/seed0", "multi", 0, {"cola": [0.2, 0.3, 0.25], "rte": [0.5, 0.6, 0.7]}
        ),
        _run(
            tmp_path, "multi/seed1", "multi", 1, {"cola": [0.4, 0.1, 0.35], "rte": [0.5, 0.6, 0.7]}
        ),
        _run(
            tmp_path, "multi/seed2", "multi", 2, {"cola": [0.3, 0.2, 0.45], "rte": [0.5, 0.6, 0.7]}
        ),
        _run(tmp_path, "multi/seed3", "multi", 3, None),  # before per-epoch evaluations
        _run(tmp_path, "bam/seed0", "bam", 0, None),
    ]
    lines = write_experiment_report(_experiment(tmp_path), runs)
    at = lines.index(next(line for line in lines if line.startswith("Dev score after each epoch")))
    assert lines[at + 2] == "| Model | task | seeds | 1 | 2 | 3 |"
    assert lines[at + 4] == "| Multi | cola | 3 | 30.0 | 20.0 | 35.0 |"
    assert lines[at + 5] == "| Multi | rte | 3 | 50.0 | 60.0 | 70.0 |"
    assert lines[at + 6] == ""  # no BAM row: it never evaluated per epoch


def test_a_fractional_last_epoch_gets_its_own_column(tmp_path):
    runs = [
        _run(tmp_path, "multi/seed0", "multi", 0, {"cola": [0.2, 0.3, 0.4]}, epochs=2.5),
        _run(tmp_path, "bam/seed0", "bam", 0, {"cola": [0.3, 0.5, 0.6, 0.7]}),
    ]
    lines = write_experiment_report(_experiment(tmp_path), runs)
    at = lines.index(next(line for line in lines if line.startswith("Dev score after each epoch")))
    assert lines[at + 2] == "| Model | task | seeds | 1 | 2 | 2.5 | 3 | 4 |"
    assert lines[at + 4] == "| Multi | cola | 1 | 20.0 | 30.0 | 40.0 | - | - |"
    assert lines[at + 5] == "| Single->Multi (BAM) | cola | 1 | 30.0 | 50.0 | - | 60.0 | 70.0 |"


def test_no_table_without_per_epoch_evaluations(tmp_path):
    runs = [_run(tmp_path, "multi/seed0", "multi", 0, None)]
    lines = write_experiment_report(_experiment(tmp_path), runs)
    assert not any(line.startswith("Dev score after each epoch") for line in lines)


def test_a_seed_still_training_some_tasks_is_counted_apart(tmp_path):
    runs = [
        _run(tmp_path, "single/cola/seed0", "single", 0, {"cola": [0.2]}),
        _run(tmp_path, "single/rte/seed0", "single", 0, {"rte": [0.6]}),
        _run(tmp_path, "single/cola/seed1", "single", 1, {"cola": [0.4]}),  # rte not finished
    ]
    lines = write_experiment_report(_experiment(tmp_path), runs)
    assert "| Single | 1 (+1 partial) | 40.0 | 30.0 ±14.1 | 60.0 |" in lines
