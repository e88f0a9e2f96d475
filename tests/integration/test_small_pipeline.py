"""Smaller students through `bamkd run`: full-size teachers reused from another experiment,
Multi and BAM students of two sizes, each run's speed measured once, the size and speed table,
export and predict of a small student; and the errors of a reuse that cannot work."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

import bamkd
from bamkd.cli import main
from bamkd.errors import ConfigError
from bamkd.experiments.pipeline import load_experiment, run_experiment
from bamkd.experiments.speed import SPEED_NAME
from bamkd.tiny import build_tiny_encoder

SIZES = {"l2": {"keep_every": 2}, "l1": {"keep_layers": [3]}}
TEACHERS = ["single/mrpc/seed0", "single/rte/seed0"]
STUDENTS = [f"{v}/{size}/seed0" for v in ("multi_small", "bam_small") for size in SIZES]


def _write(path: Path, name: str, glue: Path, encoder: Path, **extra) -> Path:
    spec = {
        "name": name,
        "output_dir": name,
        "tasks": ["mrpc", "rte"],
        "seeds": [0],
        "variants": ["single"],
        "base": {
            "model": {"name_or_path": str(encoder)},
            "data": {"glue_dir": str(glue), "max_seq_length": 48},
            "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "log_every": 2},
        },
        "speed": {"repeats": 1, "batch_size": 4, "threads": 1},
        **extra,
    }
    file = path / f"{name}.yaml"
    file.write_text(yaml.safe_dump(spec, sort_keys=False))  # sizes in this order
    return file


@pytest.fixture(scope="module")
def folders(glue_fixture_dir, tmp_path_factory) -> dict:
    """A 4-layer teachers experiment, then a small-student one that reuses its Single runs."""
    tmp = tmp_path_factory.mktemp("small-pipeline")
    encoder = build_tiny_encoder(tmp / "four", layers=4, seed=1)
    teachers = run_experiment(
        load_experiment(
            _write(
                tmp, "teachers", glue_fixture_dir, encoder, speed={"batch_size": 2, "repeats": 1}
            )
        )
    )
    assert sorted(teachers.trained) == TEACHERS
    for run in TEACHERS:  # measured by their own experiment, with its settings
        speed = json.loads((tmp / "teachers" / "runs" / run / SPEED_NAME).read_text())
        assert speed["settings"]["batch_size"] == 2
    small_file = _write(
        tmp,
        "small",
        glue_fixture_dir,
        encoder,
        variants=["single", "multi_small", "bam_small"],
        student_sizes=SIZES,
        reuse_from="teachers",
        # log_every may differ from the teachers': it does not change the trained model
        single={"train": {"log_every": 3}},
    )
    result = run_experiment(load_experiment(small_file))
    return {
        "tmp": tmp,
        "encoder": encoder,
        "glue": glue_fixture_dir,
        "file": small_file,
        "result": result,
        "small": tmp / "small",
        "teachers": tmp / "teachers",
    }


def _size_table(report: str) -> dict[str, list[str]]:
    lines = report.split("Size and speed")[1].split("\n\n")[1].splitlines()[2:]
    return {
        cells[0]: cells[1:]
        for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines)
    }


def test_teachers_are_reused_and_only_the_small_students_train(folders):
    result = folders["result"]
    assert sorted(result.trained) == sorted(STUDENTS)
    assert sorted(result.skipped) == TEACHERS
    assert not (folders["small"] / "runs" / "single").exists()
    student = yaml.safe_load((folders["small"] / "runs/bam_small/l1/seed0/config.yaml").read_text())
    assert student["distill"]["teachers"]["rte"] == [
        str(folders["teachers"] / "runs" / TEACHERS[1])
    ]
    assert student["model"]["keep_layers"] == [3]
    plan = json.loads((folders["small"] / "plan.json").read_text())
    reused = {r["id"]: r["reused_from"] for r in plan["runs"]}
    assert reused[TEACHERS[0]] == str(folders["teachers"]) and reused[STUDENTS[0]] is None
    assert {r["id"]: r["size"] for r in plan["runs"]}["bam_small/l1/seed0"] == "l1"


def test_every_run_is_measured_on_the_same_dev_examples_with_the_same_settings(folders):
    """The reused teachers, measured by their experiment with other settings, are measured
    again with this experiment's, so every speed in its report compares."""
    runs = {r: folders["small"] / "runs" / r for r in STUDENTS}
    runs.update({r: folders["teachers"] / "runs" / r for r in TEACHERS})
    speed = {r: json.loads((folder / SPEED_NAME).read_text()) for r, folder in runs.items()}
    assert {r: s["layers"] for r, s in speed.items()} == {
        **dict.fromkeys(TEACHERS, 4),
        **{r: 2 if "/l2/" in r else 1 for r in STUDENTS},
    }
    # The students time both dev sets, the teachers one each: the same examples in all.
    teacher_examples = sum(speed[r]["examples"] for r in TEACHERS)
    assert all(speed[r]["examples"] == teacher_examples for r in STUDENTS)
    for s in speed.values():
        assert s["seconds"] > 0
        assert s["settings"] == {
            "batch_size": 4,
            "repeats": 1,
            "precision": "no",
            "threads": 1,
            "limit": None,
            "device": "cpu",
        }
    assert speed["bam_small/l1/seed0"]["parameters"] < speed["bam_small/l2/seed0"]["parameters"]


def test_the_report_sets_every_models_size_and_speed_beside_its_quality(folders):
    report = (folders["small"] / "report" / "results.md").read_text()
    rows = _size_table(report)
    assert list(rows) == [
        "Single",
        "Multi small (l2)",
        "Multi small (l1)",
        "BAM small (l2)",
        "BAM small (l1)",
    ]
    assert [rows[r][:2] for r in rows] == [
        ["2", "4"],
        ["1", "2"],
        ["1", "1"],
        ["1", "2"],
        ["1", "1"],
    ]
    for label, cells in rows.items():
        speed, share, faster = cells[4], cells[6], cells[7]
        assert float(speed) > 0
        if label != "Single":
            assert re.fullmatch(r"\d+\.\d%", share) and re.fullmatch(r"\d+\.\d\dx", faster)
    assert "batch size 4" in report and "not measured" not in report
    for size in ("l2", "l1"):
        assert re.search(
            rf"BAM small \({size}\) keeps \d+\.\d% of its single-task teachers' average dev score "
            rf"and predicts \d+\.\d\dx as many dev examples per second, with [\d.]+[kM] parameters "
            rf"in one {size[1]}-layer model against [\d.]+[kM] in 2 models of 4 layers\.",
            report,
        )
    # Each smaller BAM student is tested against the Multi student of its size.
    assert "| BAM small (l1) vs Multi small |" in report
    assert "| BAM small (l2) | 1 |" in report.split("Size and speed")[0]


def test_a_dry_run_shows_the_reused_runs(folders, capsys):
    assert main(["run", str(folders["file"]), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"done  single/rte/seed0  (reused from {folders['teachers']})" in out
    assert "done  bam_small/l2/seed0" in out


def test_report_measure_speed_fills_in_runs_measured_before(folders, capsys):
    folder = folders["small"] / "runs" / "multi_small" / "l2" / "seed0"
    (folder / SPEED_NAME).unlink()
    assert main(["report", str(folders["small"])]) == 0
    assert not (folder / SPEED_NAME).exists()
    assert _size_table(capsys.readouterr().out)["Multi small (l2)"][4] == "-"
    assert main(["report", str(folders["small"]), "--measure-speed"]) == 0
    assert json.loads((folder / SPEED_NAME).read_text())["layers"] == 2
    assert float(_size_table(capsys.readouterr().out)["Multi small (l2)"][4]) > 0


def test_a_small_student_from_the_pipeline_exports_and_predicts(folders, tmp_path, capsys):
    run = folders["small"] / "runs" / "bam_small" / "l1" / "seed0"
    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out)]) == 0
    assert json.loads((out / "rte" / "config.json").read_text())["num_hidden_layers"] == 1
    assert bamkd.load(out / "multitask").predict("rte", [("a cat", "an animal")])
    source = tmp_path / "in.tsv"
    source.write_text("id\tsentence1\tsentence2\n1\ta cat sat\tan animal sat\n")
    capsys.readouterr()
    assert main(["predict", str(run), "--task", "rte", "--input", str(source)]) == 0
    row = json.loads(capsys.readouterr().out)
    want = bamkd.load(run).predict("rte", [("a cat sat", "an animal sat")])[0]
    assert row["label"] == want["label"]


# --------------------------------------------------------------------------------------------
# Reuse that cannot work: refused before the experiment folder is created.
# --------------------------------------------------------------------------------------------


def _refused(folders, message: str, overrides: list[str], **extra) -> None:
    tmp = folders["tmp"]
    file = _write(
        tmp,
        "refused",
        folders["glue"],
        folders["encoder"],
        variants=["bam_small"],
        student_sizes=SIZES,
        **extra,
    )
    with pytest.raises(ConfigError, match=message):
        run_experiment(load_experiment(file, overrides))
    assert not (tmp / "refused").exists()


def test_reuse_from_a_folder_that_does_not_exist_is_refused(folders):
    _refused(folders, r"reuse_from: .*nowhere does not exist", [], reuse_from="nowhere")


def test_reuse_of_runs_the_other_experiment_has_not_trained_is_refused(folders):
    _refused(
        folders,
        r"2 runs to reuse are not finished in .*teachers: single/mrpc/seed1, single/rte/seed1",
        ["seeds=[0,1]"],
        reuse_from="teachers",
    )


def test_reuse_of_runs_trained_with_other_settings_is_refused(folders):
    _refused(
        folders,
        r"run single/mrpc/seed0 in .*teachers was trained with other settings than this "
        r"experiment gives it \(train.lr=0.001 there, 0.002 here\)",
        ["single.train.lr=0.002"],
        reuse_from="teachers",
    )
