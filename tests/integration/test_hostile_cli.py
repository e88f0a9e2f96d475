"""Hostile input through the `bamkd` command (issue 15): each bad value, path or model folder ends
with exit status 2 and one line naming the key, file or path, with no traceback, and before
anything is created."""

from __future__ import annotations

import errno
import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml

import bamkd.runtime.storage as storage
from bamkd.cli import main

LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING) ")


def refused(capsys, args: list[str], *needles: str, absent: tuple[Path, ...] = ()) -> str:
    """Run ``bamkd args``; assert exit 2, one error line holding every needle, no traceback,
    and that none of ``absent`` was created. Returns the line."""
    code = main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line and not LOG_LINE.match(line)]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for needle in needles:
        assert needle in lines[0]
    for path in absent:
        assert not path.exists(), f"{path} was created"
    return lines[0]


def _train_args(demo_suite, out: Path, *extra: str) -> list[str]:
    tasks = ["demo_sentiment", "demo_agreement"]  # a single-sentence task and a pair task
    return [
        "train",
        "--config",
        "tiny",
        f"data.task_files=[{','.join(demo_suite[t] for t in tasks)}]",
        f"data.tasks=[{','.join(tasks)}]",
        "data.train_limit=16",
        "data.eval_limit=8",
        "train.epochs=1",
        "train.batch_size=8",
        f"output_dir={out}",
        *extra,
    ]


# ----- values: refused with the key named, before the run folder exists --------------------


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("train.epochs=.inf", "train.epochs=inf is not a finite number"),
        ("train.lr=.nan", "train.lr=nan is not a finite number"),
        ("train.lr=-.inf", "train.lr=-inf is not a finite number"),
        ("train.warmup_fraction=.nan", "train.warmup_fraction=nan"),
        ("train.adam_beta2=.inf", "train.adam_beta2=inf"),
        ("train.max_grad_norm=.nan", "train.max_grad_norm=nan"),
        ("model.dropout=.nan", "model.dropout=nan"),
        ("distill.temperature=-.inf", "distill.temperature=-inf"),
        ("train.lr=nan", "train.lr must be a number, got 'nan'"),
        ("data.max_seq_length=1", "data.max_seq_length=1 must be 3 to 100000"),
        ("data.max_seq_length=4", "data.max_seq_length=4 is too short for this tokenizer"),
        ("data.train_limit=-1", "data.train_limit=-1 must be a positive number of rows"),
        ("data.eval_limit=0", "data.eval_limit=0 must be a positive number of rows"),
        ("train.mixed_precision=yes", "train.mixed_precision=True (YAML's reading"),
        ("train.keep_checkpoints=0", "train.keep_checkpoints=0 must be positive"),
        ("data.tasks=[nosuchtask]", "unknown task 'nosuchtask'"),
        ("data.tasks=[ax]", "task 'ax' has no head of its own"),
        ("data.tasks=[rte]", "Pass data_dir (data.glue_dir in a run config)"),
        ("distill.teachers={bogus: [x]}", "distill.teachers names task 'bogus'"),
    ],
)
def test_bad_values_are_refused_before_the_run_folder_exists(
    demo_suite, tmp_path, capsys, override, needle
):
    out = tmp_path / "run"
    refused(capsys, _train_args(demo_suite, out, override), needle, absent=(out,))


def test_a_missing_glue_folder_is_refused_before_the_run_folder_exists(tmp_path, capsys):
    out, missing = tmp_path / "run", tmp_path / "nowhere"
    args = ["train", "--config", "tiny", "data.tasks=[mrpc]", f"data.glue_dir={missing}"]
    refused(
        capsys,
        [*args, f"output_dir={out}"],
        f"{missing}: GLUE data folder not found",
        absent=(out,),
    )


def test_a_missing_data_file_is_refused_before_the_run_folder_exists(
    tmp_path, capsys, glue_fixture_dir
):
    glue, out = tmp_path / "glue", tmp_path / "run"
    shutil.copytree(glue_fixture_dir / "RTE", glue / "RTE")
    (glue / "RTE" / "dev.tsv").unlink()
    args = ["train", "--config", "tiny", "data.tasks=[rte]", f"data.glue_dir={glue}"]
    refused(
        capsys,
        [*args, f"output_dir={out}"],
        f"{glue / 'RTE' / 'dev.tsv'}: file not found",
        absent=(out,),
    )


def test_a_header_without_a_needed_column_is_refused_before_the_run_folder_exists(tmp_path, capsys):
    """A 10 MB one-line header: quoted in a short excerpt, and found before anything is made."""
    glue, out = tmp_path / "glue", tmp_path / "run"
    (glue / "RTE").mkdir(parents=True)
    header = "\t".join(f"c{i}{'y' * 200}" for i in range(50_000))
    for split in ("train", "dev"):
        (glue / "RTE" / f"{split}.tsv").write_text(f"{header}\na\tb\n")
    args = ["train", "--config", "tiny", "data.tasks=[rte]", f"data.glue_dir={glue}"]
    line = refused(
        capsys,
        [*args, f"output_dir={out}"],
        f"{glue / 'RTE' / 'train.tsv'}:1: the header has no column 'sentence1'",
        "and 49,984 more",
        absent=(out,),
    )
    assert len(line) < 1_500


def test_max_seq_length_at_the_tokenizer_bound_trains_and_truncates(demo_suite, tmp_path):
    """5 holds [CLS] a [SEP] b [SEP] for the pair task: accepted, and every row fits."""
    from bamkd.config import build_config
    from bamkd.data import load_encoded
    from bamkd.model import load_tokenizer
    from bamkd.runtime.runs import task_specs

    cfg = build_config(
        "tiny", _train_args(demo_suite, tmp_path / "run", "data.max_seq_length=5")[3:]
    )
    tokenizer = load_tokenizer("bamkd-tiny")
    for spec in task_specs(cfg.data).values():
        enc = load_encoded(spec, "train", tokenizer, 5, data_dir=None, limit=16)
        assert enc.lengths.max() <= 5 and enc.lengths.min() >= 3


# ----- the file system -----------------------------------------------------------------------


def test_output_dir_that_is_a_file(demo_suite, tmp_path, capsys):
    f = tmp_path / "taken"
    f.write_text("keep me")
    refused(capsys, _train_args(demo_suite, f), f"output_dir={f} is a file, not a folder")
    refused(capsys, _train_args(demo_suite, f / "run"), f"lies under {f}, which is a file")
    assert f.read_text() == "keep me"


def test_output_dir_on_a_read_only_file_system(demo_suite, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(storage, "_read_only_mount", lambda folder: folder == tmp_path)
    out = tmp_path / "run"
    refused(
        capsys,
        _train_args(demo_suite, out),
        f"{tmp_path} is on a read-only file system",
        absent=(out,),
    )


def test_output_dir_without_write_permission(demo_suite, tmp_path, capsys, monkeypatch):
    real_access = storage.os.access
    monkeypatch.setattr(
        storage.os, "access", lambda p, mode: Path(p) != tmp_path and real_access(p, mode)
    )
    out = tmp_path / "run"
    refused(
        capsys,
        _train_args(demo_suite, out),
        f"permission denied to write in {tmp_path}",
        absent=(out,),
    )


def test_a_disk_that_fills_during_the_final_save(demo_suite, tmp_path, capsys, monkeypatch):
    """safetensors words ENOSPC as its own error type; the line names the model folder."""
    import bamkd.model

    def full_disk(*args, **kwargs):
        raise RuntimeError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )

    monkeypatch.setattr(bamkd.model, "save_file", full_disk)
    out = tmp_path / "run"
    refused(
        capsys,
        _train_args(demo_suite, out),
        f"{out / 'model'}: No space left on device; free some disk space",
    )
    assert not (out / "model").exists() and not list(out.glob(".model.tmp*"))


@pytest.mark.parametrize("command", ["export", "submit"])
def test_out_folder_that_is_a_file_or_read_only(tiny_run, tmp_path, capsys, monkeypatch, command):
    f = tmp_path / "taken"
    f.write_text("keep me")
    refused(capsys, [command, str(tiny_run), "--out", str(f)], f"--out={f} is a file")
    monkeypatch.setattr(storage, "_read_only_mount", lambda folder: folder == tmp_path)
    out = tmp_path / "out"
    refused(
        capsys, [command, str(tiny_run), "--out", str(out)], "read-only file system", absent=(out,)
    )


def test_report_into_a_read_only_run_folder(tiny_run, capsys, monkeypatch):
    import bamkd.experiments.report

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tiny_run / "training.png"))

    monkeypatch.setattr(bamkd.experiments.report, "plot_training", read_only)
    refused(
        capsys, ["report", str(tiny_run)], f"{tiny_run / 'training.png'}: Read-only file system"
    )


# ----- model folders ---------------------------------------------------------------------------


def _model_copy(tiny_encoder: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_encoder, folder)
    return folder


def test_a_model_folder_with_pickled_weights_only(demo_suite, tiny_encoder, tmp_path, capsys):
    model = _model_copy(tiny_encoder, tmp_path)
    (model / "model.safetensors").unlink()
    # Not a real pickle: anything that tried to unpickle it would fail with a traceback.
    (model / "pytorch_model.bin").write_bytes(b"cos\nsystem\n(S'touch PWNED'\ntR.")
    out = tmp_path / "run"
    refused(
        capsys,
        _train_args(demo_suite, out, f"model.name_or_path={model}"),
        f"model.name_or_path={model} holds its weights only as a pickle (pytorch_model.bin)",
        "safetensors",
        absent=(out, Path("PWNED")),
    )


def test_a_model_folder_that_asks_for_remote_code(demo_suite, tiny_encoder, tmp_path, capsys):
    model = _model_copy(tiny_encoder, tmp_path)
    config = json.loads((model / "config.json").read_text())
    config.update(model_type="evil", auto_map={"AutoConfig": "evil.C", "AutoModel": "evil.M"})
    (model / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "executed"
    (model / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    out = tmp_path / "run"
    refused(
        capsys,
        _train_args(demo_suite, out, f"model.name_or_path={model}"),
        "asks to run its own Python code",
        "model.trust_remote_code=true",
        absent=(out, marker),
    )


@pytest.mark.parametrize(
    ("remove", "needle"),
    [("config.json", "has no config.json"), ("model.safetensors", "has no model weights")],
)
def test_an_incomplete_model_folder(demo_suite, tiny_encoder, tmp_path, capsys, remove, needle):
    model = _model_copy(tiny_encoder, tmp_path)
    (model / remove).unlink()
    out = tmp_path / "run"
    refused(
        capsys, _train_args(demo_suite, out, f"model.name_or_path={model}"), needle, absent=(out,)
    )


def test_a_missing_model_folder(demo_suite, tmp_path, capsys):
    out, model = tmp_path / "run", tmp_path / "no-model"
    refused(
        capsys,
        _train_args(demo_suite, out, f"model.name_or_path={model}"),
        f"model.name_or_path={model}: model folder not found",
        absent=(out,),
    )


# ----- leftovers of interrupted writes ---------------------------------------------------------


def test_resume_removes_leftover_temporaries_and_says_so(demo_suite, tmp_path, capsys, caplog):
    out = tmp_path / "run"
    # mixed_precision=no as documented (YAML reads `no` as false).
    args = _train_args(demo_suite, out, "train.checkpoint_every=1", "train.mixed_precision=no")
    assert main(args) == 0
    # As after a SIGKILL mid-final-save: no final model or state, a checkpoint half-written.
    shutil.rmtree(out / "model")
    (out / "trainer_state.json").unlink()
    leftovers = [
        out / "checkpoints" / ".step-00000002.tmp4242",
        out / ".model.tmp4242",
        out / ".model.old4243",
    ]
    for folder in leftovers:
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "model.safetensors").write_bytes(b"\0" * 1024)
    (out / ".dev_metrics.json.tmp17").write_text("{")
    user_file = out / "notes.tmp1"
    user_file.write_text("mine")
    capsys.readouterr()
    with caplog.at_level("INFO", logger="bamkd.train"):
        assert main([*args, "--resume"]) == 0
    assert "removed 4 leftover temporary file(s) or folder(s) of interrupted writes" in caplog.text
    assert ".model.tmp4242" in caplog.text
    assert not any(p.exists() for p in leftovers) and user_file.read_text() == "mine"
    assert json.loads((out / "trainer_state.json").read_text())["finished"] is True


# ----- bamkd run ---------------------------------------------------------------------------------


def _experiment(tmp_path: Path, glue: Path, **changes) -> Path:
    spec = {
        "name": "hostile",
        "output_dir": "out",
        "tasks": ["rte"],
        "seeds": [0, 1],
        "variants": ["single", "multi", "bam"],
        "submit": ["bam"],
        "base": {
            "model": {"name_or_path": "bamkd-tiny"},
            "data": {"glue_dir": str(glue), "max_seq_length": 48},
            "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "log_every": 2},
        },
    }
    spec.update(changes)
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--only", "multi", "bogus"], "--only: unknown variant 'bogus'; known variants: single,"),
        (["--only", "bam_ft"], "--only: variant 'bam_ft' is not in this experiment's variants"),
        (["--only", "multi", "seeds=[0]", "train.lr=1e-4"], "write base.train.lr=1e-4 for every"),
        (["--only", "seeds=[0]"], "--only needs at least one variant name"),
        (["base.train.lr=.nan"], "experiment run single/rte/seed0: train.lr=nan is not a finite"),
        (["base.data.max_seq_length=4"], "data.max_seq_length=4 is too short for this tokenizer"),
        (["tasks=[rte, bogus]"], "experiment run single/bogus/seed0: unknown task 'bogus'"),
        (["base.data.train_limit=0"], "data.train_limit=0 must be a positive number of rows"),
        (["base.model.name_or_path=./no-model"], "model folder not found"),
    ],
)
def test_bad_experiment_input_is_refused_before_the_experiment_folder_exists(
    tmp_path, capsys, glue_fixture_dir, args, needle
):
    path = _experiment(tmp_path, glue_fixture_dir)
    refused(capsys, ["run", str(path), *args], needle, absent=(tmp_path / "out",))


def test_a_missing_glue_folder_is_refused_before_the_experiment_folder_exists(tmp_path, capsys):
    path = _experiment(tmp_path, tmp_path / "nowhere")
    refused(capsys, ["run", str(path)], "GLUE data folder not found", absent=(tmp_path / "out",))


def test_experiment_output_dir_that_is_a_file(tmp_path, capsys, glue_fixture_dir):
    f = tmp_path / "taken"
    f.write_text("keep me")
    path = _experiment(tmp_path, glue_fixture_dir, output_dir=str(f))
    refused(capsys, ["run", str(path)], f"{path}: output_dir={f} is a file, not a folder")


def test_overrides_after_only_are_applied_and_a_dry_run_creates_nothing(
    tmp_path, capsys, glue_fixture_dir
):
    path = _experiment(tmp_path, glue_fixture_dir)
    assert main(["run", str(path), "--only", "multi", "seeds=[1]", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "todo  multi/seed1" in printed and "seed0" not in printed
    assert not (tmp_path / "out").exists()


def test_a_submission_that_cannot_be_written_yet_is_a_warning(tmp_path, capsys, glue_fixture_dir):
    """`--only single` with `submit: [bam]` trains and exits 0; the BAM submission waits. Once
    BAM is trained, the submission finds WNLI's training file through data.glue_dir."""
    path = _experiment(tmp_path, glue_fixture_dir, seeds=[0])
    assert main(["run", str(path), "--only", "single"]) == 0
    printed = capsys.readouterr().out
    assert "warning: submission (bam) not written: run bam/seed0 is not trained yet" in printed
    assert not (tmp_path / "out" / "submission").exists()

    assert main(["run", str(path), "--only", "bam"]) == 0
    assert "warning" not in capsys.readouterr().out
    archive = tmp_path / "out" / "submission" / "bam" / "submission.zip"
    assert {"RTE.tsv", "WNLI.tsv"} <= set(zipfile.ZipFile(archive).namelist())
