"""The whole pipeline on the GLUE fixtures with a tiny encoder: teachers, teacher predictions,
a BAM student, the report and the submission archive; then a rerun that trains nothing."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import yaml

from bamkd.cli import main
from bamkd.experiments.pipeline import load_experiment, run_experiment
from bamkd.teachers import read_teacher_predictions


def _experiment(tmp_path: Path, glue: Path) -> Path:
    spec = {
        "name": "fixture",
        "output_dir": "out",
        "tasks": ["mrpc", "stsb", "rte"],
        "seeds": [0],
        "variants": ["single", "multi", "bam"],
        "submit": ["bam"],
        "base": {
            "model": {"name_or_path": "bamkd-tiny"},
            "data": {"glue_dir": str(glue), "max_seq_length": 48},
            "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "log_every": 2},
        },
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_full_pipeline_then_rerun_skips_everything(tmp_path, glue_fixture_dir):
    exp = load_experiment(_experiment(tmp_path, glue_fixture_dir))
    assert exp.output_dir == str((tmp_path / "out").resolve())
    result = run_experiment(exp)
    out = tmp_path / "out"
    runs = out / "runs"
    assert sorted(result.trained) == sorted(
        ["single/mrpc/seed0", "single/stsb/seed0", "single/rte/seed0", "multi/seed0", "bam/seed0"]
    )
    # Teachers come before the student that needs them.
    assert result.trained.index("bam/seed0") > result.trained.index("single/rte/seed0")

    # Teacher predictions: keyed by id, swapped copies of the symmetric task included.
    mrpc = read_teacher_predictions(runs / "single/mrpc/seed0", "mrpc")
    rows = (
        len(
            (glue_fixture_dir / "MRPC" / "train.tsv")
            .read_text(encoding="utf-8-sig")
            .strip()
            .splitlines()
        )
        - 1
    )
    assert len(mrpc.ids) == 2 * rows == mrpc.outputs.shape[0]
    assert sum(i.endswith(":swap") for i in mrpc.ids) == rows
    assert mrpc.outputs.shape[1] == 2
    manifest = json.loads((runs / "single/mrpc/seed0/teacher_predictions/mrpc.json").read_text())
    assert manifest["num_examples"] == 2 * rows and manifest["kind"] == "classification"
    assert manifest["seconds"] > 0
    stsb = read_teacher_predictions(runs / "single/stsb/seed0", "stsb")
    assert stsb.manifest["kind"] == "regression" and stsb.outputs.shape[1] == 1

    # The student was told where its teachers are, and annealed lambda from 0 to 1.
    student = yaml.safe_load((runs / "bam/seed0/config.yaml").read_text())
    assert student["distill"]["teachers"]["rte"] == [str(runs / "single/rte/seed0")]
    logged = [json.loads(x) for x in (runs / "bam/seed0/metrics.jsonl").read_text().splitlines()]
    lambdas = [x["lambda"]["rte"] for x in logged if "lambda" in x]
    assert lambdas == sorted(lambdas) and lambdas[-1] == 1.0 and lambdas[0] < 0.5
    multi_log = [
        json.loads(x) for x in (runs / "multi/seed0/metrics.jsonl").read_text().splitlines()
    ]
    assert all(v == 1.0 for x in multi_log if "lambda" in x for v in x["lambda"].values())

    # Report: the paper-style table, significance section, CSV and plots.
    report = (out / "report" / "results.md").read_text()
    for row in ("| Single | 1 |", "| Multi | 1 |", "| Single->Multi (BAM) | 1 |"):
        assert row in report
    assert "Mann-Whitney" in report
    # Exposure: one epoch, no multiples at these sizes: one pass over every task; a single-task
    # run has its task in every step.
    exposure = report.split("Task exposure")[1].split("\n\n")[1].splitlines()
    single_row = next(x for x in exposure if x.startswith("| Single |"))
    cells = [c.strip() for c in single_row.strip("|").split("|")][1:]
    assert len(cells) == 3
    for cell in cells:
        passes, steps = cell.split(" / ")
        assert passes == "1 (1x)"
        seen, total = steps.split(" of ")
        assert seen == total
    assert any(x.startswith("| Multi |") for x in exposure)
    # Compute: one row per variant with its run count, and a total that adds up the runs'
    # recorded training-loop times and the teachers' prediction times.
    assert "| Single | 3 |" in report and "| Multi | 1 |" in report
    assert "older files" not in report
    trained_s = sum(
        json.loads((runs / r / "trainer_state.json").read_text())["elapsed_seconds"]
        for r in result.trained
    )
    taught_s = sum(
        json.loads(p.read_text())["seconds"]
        for p in runs.glob("single/*/seed0/teacher_predictions/*.json")
    )
    total_row = next(x for x in report.splitlines() if x.startswith("| **total** |"))
    assert total_row == (
        f"| **total** | 5 | **{(trained_s + taught_s) / 60:.1f}** "
        f"({(trained_s + taught_s) / 3600:.2f} h) |"
    )
    csv_text = (out / "report" / "results.csv").read_text()
    assert "bam,avg," in csv_text and "single,rte," in csv_text
    for png in ("scores.png", "training.png"):
        assert (out / "report" / png).read_bytes()[:4] == b"\x89PNG"

    # Submission: the tasks trained, WNLI by the majority class, the rest reported missing.
    archive = out / "submission" / "bam" / "submission.zip"
    names = set(zipfile.ZipFile(archive).namelist())
    assert names == {"MRPC.tsv", "STS-B.tsv", "RTE.tsv", "WNLI.tsv"}
    summary = result.summary()
    assert "CoLA.tsv" in summary and "MNLI-m.tsv" in summary
    rte = zipfile.ZipFile(archive).read("RTE.tsv").decode().splitlines()
    assert rte[0] == "index\tprediction"
    assert {line.split("\t")[1] for line in rte[1:]} <= {"entailment", "not_entailment"}

    # A second run of the same experiment trains nothing.
    again = run_experiment(load_experiment(tmp_path / "experiment.yaml"))
    assert again.trained == [] and len(again.skipped) == 5

    # `bamkd report` on the experiment folder rebuilds the same report from plan.json.
    (out / "report" / "results.md").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report" / "results.md").read_text() == report


def test_a_later_sitting_with_other_seeds_keeps_the_earlier_runs_in_the_report(
    tmp_path, glue_fixture_dir
):
    """A study run in pieces (the smaller studies on fewer seeds) reports every finished run."""
    path = _experiment(tmp_path, glue_fixture_dir)
    spec = yaml.safe_load(path.read_text())
    spec.update(tasks=["rte"], variants=["single"], submit=[])
    path.write_text(yaml.safe_dump(spec))
    first = run_experiment(load_experiment(path))
    assert first.trained == ["single/rte/seed0"]
    second = run_experiment(load_experiment(path, ["seeds=[1]"]))
    assert second.trained == ["single/rte/seed1"]

    out = tmp_path / "out"
    plan = json.loads((out / "plan.json").read_text())
    assert sorted(r["id"] for r in plan["runs"]) == ["single/rte/seed0", "single/rte/seed1"]
    assert plan["experiment"]["seeds"] == [0, 1]
    report = (out / "report" / "results.md").read_text()
    assert "| Single | 2 |" in report  # both seeds in the table, not only this sitting's
    assert "single,rte,2," in (out / "report" / "results.csv").read_text()
