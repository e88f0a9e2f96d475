"""The report's significance section on hand-made finished runs: p-values of BAM against Single
and Multi, and the smallest p the seed counts allow, so that p = 0.05 at 3 seeds reads right;
and runs.csv, the per-run scores those tables are computed from."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from types import SimpleNamespace

from bamkd.experiments.report import write_experiment_report


def _run(root: Path, variant: str, seed: int, score: float) -> SimpleNamespace:
    run_id = f"{variant}/seed{seed}" if variant != "single" else f"single/a/seed{seed}"
    folder = root / run_id
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(
        json.dumps({"finished": True, "elapsed_seconds": 60.0})
    )
    (folder / "dev_metrics.json").write_text(json.dumps({"a": {"accuracy": score}}))
    record = {"step": 1, "loss": {"a": 0.5}, "lambda": {"a": 1.0}, "lr": 1e-3}
    (folder / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    (folder / "run_manifest.json").write_text(json.dumps({"git_commit": f"c0ffee{seed}"}))
    return SimpleNamespace(
        id=run_id, variant=variant, tasks=["a"], seed=seed, folder=folder, size=None
    )


def _report(tmp_path: Path, seeds: dict[str, int]) -> list[str]:
    # BAM's seeds all score above every Single and Multi seed: the best rank split there is.
    base = {"single": 0.70, "multi": 0.60, "bam": 0.80}
    runs = [
        _run(tmp_path / "runs", variant, seed, base[variant] + 0.01 * seed)
        for variant, count in seeds.items()
        for seed in range(count)
    ]
    exp = SimpleNamespace(name="sig", output_dir=str(tmp_path / "exp"), tasks=["a"])
    return write_experiment_report(exp, runs)


def test_three_seeds_each_reach_the_floor_and_the_report_names_it(tmp_path):
    lines = _report(tmp_path, {"single": 3, "multi": 3, "bam": 3})
    rows = {line.split(" | ")[0]: line for line in lines if line.startswith("| BAM vs ")}
    assert rows["| BAM vs Single"] == "| BAM vs Single | 0.050 | 0.050 |"
    assert rows["| BAM vs Multi"] == "| BAM vs Multi | 0.050 | 0.050 |"
    floor = next(line for line in lines if line.startswith("The smallest p"))
    assert "BAM vs Single 0.050 (3 vs 3 seeds)" in floor
    assert "BAM vs Multi 0.050 (3 vs 3 seeds)" in floor


def test_uneven_seed_counts_give_their_own_floor(tmp_path):
    # 3 BAM seeds against 4 Single seeds: C(7, 3) = 35 rank splits; against 2 Multi seeds:
    # C(5, 3) = 10.
    lines = _report(tmp_path, {"single": 4, "multi": 2, "bam": 3})
    floor = next(line for line in lines if line.startswith("The smallest p"))
    assert f"BAM vs Single {1 / 35:.3f} (3 vs 4 seeds)" in floor
    assert f"BAM vs Multi {1 / 10:.3f} (3 vs 2 seeds)" in floor


def test_one_seed_has_no_test_and_no_floor(tmp_path):
    lines = _report(tmp_path, {"single": 1, "multi": 1, "bam": 1})
    assert not any(line.startswith("The smallest p") for line in lines)


def test_runs_csv_holds_every_score_the_tables_are_computed_from(tmp_path):
    runs = [
        _run(tmp_path / "runs", variant, seed, base + 0.01 * seed)
        for variant, count, base in (("single", 3, 0.7), ("multi", 2, 0.6), ("bam", 3, 0.8))
        for seed in range(count)
    ]
    unfinished = _run(tmp_path / "runs", "bam", 3, 0.9)
    (unfinished.folder / "trainer_state.json").write_text(json.dumps({"finished": False}))
    (runs[0].folder / "run_manifest.json").unlink()  # a run without a manifest: no commit
    pair = _run(tmp_path / "runs", "pairs_multi", 0, 0.5)
    pair.tasks = ["a", "b"]  # a pairs run counts for its target, in the column target+partner
    (pair.folder / "dev_metrics.json").write_text(
        json.dumps({"a": {"accuracy": 0.5}, "b": {"accuracy": 0.9}})
    )
    exp = SimpleNamespace(name="sig", output_dir=str(tmp_path / "exp"), tasks=["a"])
    write_experiment_report(exp, [*runs, unfinished, pair])
    report = tmp_path / "exp" / "report"
    with open(report / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9  # one per finished run and table cell; not the unfinished run
    assert rows[0]["git_commit"] == ""
    assert [(r["row"], r["task"], r["score"]) for r in rows if r["row"] == "pairs_multi"] == [
        ("pairs_multi", "a+b", "0.5")
    ]
    bam = sorted((r for r in rows if r["row"] == "bam"), key=lambda r: int(r["seed"]))
    assert [r["run"] for r in bam] == ["bam/seed0", "bam/seed1", "bam/seed2"]
    # Scores are written exactly as computed (repr of the float), not rounded.
    assert [float(r["score"]) for r in bam] == [0.80 + 0.01 * seed for seed in range(3)]
    assert json.loads(bam[1]["metrics"]) == {"accuracy": 0.80 + 0.01}
    assert bam[2]["git_commit"] == "c0ffee2" and bam[2]["training_minutes"] == "1.0"
    # The summary table's medians come back from runs.csv alone.
    with open(report / "results.csv", newline="") as f:
        summary = {(r["variant"], r["task"]): float(r["median"]) for r in csv.DictReader(f)}
    for variant in ("single", "multi", "bam"):
        scores = [float(r["score"]) for r in rows if r["row"] == variant]
        assert statistics.median(scores) == summary[(variant, "a")]
