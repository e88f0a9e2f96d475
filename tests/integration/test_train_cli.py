"""End to end through the `bamkd` command: train, evaluate, refuse to overwrite, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bamkd.cli import main


def _train_args(demo_suite, out: Path, *extra: str) -> list[str]:
    tasks = ["demo_sentiment", "demo_agreement", "demo_rating"]
    files = ",".join(demo_suite[t] for t in tasks)
    return [
        "train",
        "--config",
        "tiny",
        f"data.task_files=[{files}]",
        f"data.tasks=[{','.join(tasks)}]",
        "data.train_limit=64",
        "data.eval_limit=32",
        "train.epochs=1",
        f"output_dir={out}",
        *extra,
    ]


def test_train_writes_a_complete_run_folder(demo_suite, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(demo_suite, out)) == 0
    printed = capsys.readouterr().out
    assert "demo_sentiment" in printed and "average" in printed

    for name in (
        "config.yaml",
        "metrics.jsonl",
        "trainer_state.json",
        "dev_metrics.json",
        "model/bamkd_model.safetensors",
        "model/bamkd.json",
        "model/config.json",
    ):
        assert (out / name).is_file(), name
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["finished"] is True and state["step"] == state["total_steps"] > 0
    metrics = json.loads((out / "dev_metrics.json").read_text())
    assert set(metrics) == {"demo_sentiment", "demo_agreement", "demo_rating"}
    assert set(metrics["demo_agreement"]) == {"f1", "accuracy"}
    assert set(metrics["demo_rating"]) == {"pearson", "spearman"}
    # The saved config is the resolved one and loads back as-is.
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["train_limit"] == 64 and saved["model"]["name_or_path"] == "bamkd-tiny"
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    train_lines = [x for x in lines if "loss" in x]
    assert train_lines[-1]["step"] == state["total_steps"]
    assert any("dev" in x for x in lines)

    # `bamkd report` draws the training curves and writes a markdown summary.
    assert main(["report", str(out)]) == 0
    assert (out / "training.png").read_bytes()[:4] == b"\x89PNG"
    assert "| demo_rating |" in (out / "report.md").read_text()
    capsys.readouterr()

    # `bamkd evaluate` recomputes the same dev metrics from the saved model.
    assert main(["evaluate", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    for task, values in metrics.items():
        for key, value in values.items():
            assert again[task][key] == pytest.approx(value, abs=1e-6)


def test_existing_run_is_not_overwritten(demo_suite, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(demo_suite, out)) == 0
    before = (out / "model" / "bamkd_model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(_train_args(demo_suite, out)) == 2
    err = capsys.readouterr().err
    assert "already holds a run; pass --resume" in err
    assert (out / "model" / "bamkd_model.safetensors").read_bytes() == before
    # --resume on a finished run returns its results without training again.
    assert main([*_train_args(demo_suite, out), "--resume"]) == 0
    assert (out / "model" / "bamkd_model.safetensors").read_bytes() == before


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lrr=1", "unknown config key 'train.lrr'"),
        ("train.epochs=abc", "train.epochs must be a number, got 'abc'"),
        ("model.pooling=max", "model.pooling='max' is not one of"),
        ("data.tasks=[nosuchtask]", "nosuchtask"),
    ],
)
def test_bad_config_ends_with_one_clear_line(demo_suite, tmp_path, capsys, override, message):
    code = main([*_train_args(demo_suite, tmp_path / "run"), override])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err


def test_missing_glue_folder_is_named(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    code = main(
        [
            "train",
            "--config",
            "tiny",
            "data.tasks=[mrpc]",
            f"data.glue_dir={missing}",
            f"output_dir={tmp_path / 'run'}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and str(missing) in err and "GLUE" in err


def test_malformed_row_is_named_with_its_line(tmp_path, capsys, glue_fixture_dir):
    import shutil

    glue = tmp_path / "glue"
    shutil.copytree(glue_fixture_dir / "RTE", glue / "RTE")
    path = glue / "RTE" / "train.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[3] = "\t".join(lines[3].split("\t")[:2])  # drop two columns on data row 3 (line 4)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code = main(
        [
            "train",
            "--config",
            "tiny",
            "data.tasks=[rte]",
            f"data.glue_dir={glue}",
            f"output_dir={tmp_path / 'run'}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert f"{path}:4: expected 4 tab-separated columns, found 2" in err
