"""Several `bamkd run` sittings of one experiment share its runs: a run another process holds
is left to it, a student waits for a teacher another sitting is training, and the inference
speed is measured only when no other sitting trains (its load would skew the timing).

The other sitting is played by this process holding a run's lock (flock locks belong to an
open file, so the lock this test takes blocks the pipeline's own attempt)."""

from __future__ import annotations

import copy
import logging
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from bamkd import train as train_module
from bamkd.cli import main
from bamkd.config import RunConfig, from_dict
from bamkd.experiments import pipeline
from bamkd.experiments.pipeline import load_experiment, plan_experiment, run_experiment
from bamkd.runtime.runs import is_finished
from bamkd.runtime.storage import RunLock, file_lock
from bamkd.train import train


def _experiment(tmp_path: Path, glue: Path, variants: list[str]) -> Path:
    spec = {
        "name": "shared",
        "output_dir": "out",
        "tasks": ["mrpc", "rte"],
        "seeds": [0],
        "variants": variants,
        "base": {
            "model": {"name_or_path": "bamkd-tiny"},
            "data": {"glue_dir": str(glue), "max_seq_length": 48},
            "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "log_every": 2},
        },
        "speed": {"limit": 16, "repeats": 1},
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _run_folder(exp, run_id: str) -> Path:
    return next(r.folder for r in plan_experiment(exp) if r.id == run_id)


def _no_sleep(seconds: float) -> None:
    raise AssertionError("the sitting waited although nothing it could train was pending")


def test_a_run_another_sitting_holds_is_left_to_it(tmp_path, glue_fixture_dir, monkeypatch, caplog):
    exp = load_experiment(_experiment(tmp_path, glue_fixture_dir, ["single"]))
    monkeypatch.setattr(pipeline, "_wait", _no_sleep)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)  # every core of a 4-core machine
    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rte = _run_folder(exp, "single/rte/seed0")
    caplog.set_level(logging.INFO, logger="bamkd")
    speed_lock = Path(exp.output_dir) / pipeline.SPEED_LOCK_NAME
    # The other sitting: training rte (its run lock) and so keeping inference timing off.
    with RunLock(rte), file_lock(speed_lock, shared=True, wait=False) as sitting:
        assert sitting
        held_by = RunLock.holder(rte)
        result = run_experiment(exp)
    assert result.trained == ["single/mrpc/seed0"]
    assert result.in_progress == {"single/rte/seed0": held_by}
    assert "1 still training in other sittings" in result.summary()
    assert f"single/rte/seed0: process {held_by} is training it" in caplog.text
    # Two sittings that each take every core fight over them: the fix is named once.
    assert caplog.text.count("start each sitting with OMP_NUM_THREADS=2") == 1
    # Measuring while another sitting trains would time its load, not the model.
    assert "inference speed not measured now" in caplog.text
    assert not (_run_folder(exp, "single/mrpc/seed0") / "speed.json").exists()

    # Once the other sitting has stopped, the same command trains what is left and measures.
    again = run_experiment(exp)
    assert again.trained == ["single/rte/seed0"] and again.skipped == ["single/mrpc/seed0"]
    assert (rte / "speed.json").is_file()
    assert (_run_folder(exp, "single/mrpc/seed0") / "speed.json").is_file()


def test_a_run_taken_between_the_check_and_the_start_is_left_to_its_taker(
    tmp_path, glue_fixture_dir, monkeypatch
):
    """The lock decides, not the look at it: a sitting that lost the race passes the run over."""
    exp = load_experiment(_experiment(tmp_path, glue_fixture_dir, ["single"]))
    monkeypatch.setattr(pipeline, "_wait", _no_sleep)
    monkeypatch.setattr(pipeline.RunLock, "holder", staticmethod(lambda folder: None))
    rte = _run_folder(exp, "single/rte/seed0")
    with RunLock(rte):
        result = run_experiment(exp)
    assert result.trained == ["single/mrpc/seed0"]
    assert list(result.in_progress) == ["single/rte/seed0"]
    assert not (rte / "run_manifest.json").exists()  # nothing written into the held folder


def test_a_student_waits_for_the_teacher_another_sitting_finishes(
    tmp_path, glue_fixture_dir, monkeypatch, caplog
):
    exp = load_experiment(_experiment(tmp_path, glue_fixture_dir, ["single", "bam"]))
    teacher_id = "single/rte/seed0"
    teacher = next(r for r in plan_experiment(exp) if r.id == teacher_id)
    lock = RunLock(teacher.folder).acquire()
    held_by = RunLock.holder(teacher.folder)
    waits: list[float] = []

    def other_sitting_finishes(seconds: float) -> None:
        # The other sitting is still training at the first look; by the second it has
        # finished the teacher and let it go.
        waits.append(seconds)
        if len(waits) == 2:
            lock.release()
            train(from_dict(RunConfig, copy.deepcopy(teacher.config)))

    monkeypatch.setattr(pipeline, "_wait", other_sitting_finishes)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # one thread each: no warning
    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: 2)
    caplog.set_level(logging.INFO, logger="bamkd")
    result = run_experiment(exp, poll_seconds=7.0)
    assert waits == [7.0, 7.0]
    assert result.trained == ["single/mrpc/seed0", "bam/seed0"]
    assert result.by_others == [teacher_id] and result.in_progress == {}
    assert "1 finished by other sittings" in result.summary()
    assert f"bam/seed0: waiting for {teacher_id} (process {held_by}) to finish" in caplog.text
    assert caplog.text.count("waiting for") == 1  # said once, not at every look
    assert "OMP_NUM_THREADS" not in caplog.text
    student = yaml.safe_load((_run_folder(exp, "bam/seed0") / "config.yaml").read_text())
    assert student["distill"]["teachers"]["rte"] == [str(teacher.folder)]


def test_a_held_teacher_released_unfinished_is_trained_here(
    tmp_path, glue_fixture_dir, monkeypatch
):
    """A sitting stopped with SIGTERM releases its run unfinished: the waiting one takes it."""
    exp = load_experiment(_experiment(tmp_path, glue_fixture_dir, ["single", "bam"]))
    teacher = _run_folder(exp, "single/rte/seed0")
    lock = RunLock(teacher).acquire()
    monkeypatch.setattr(pipeline, "_wait", lambda seconds: lock.release())
    result = run_experiment(exp)
    assert result.trained == ["single/mrpc/seed0", "single/rte/seed0", "bam/seed0"]
    assert result.by_others == [] and result.in_progress == {}


def test_exclusive_yields_false_when_another_holder_has_the_file(tmp_path):
    path = tmp_path / "exp" / ".speed.lock"
    with file_lock(path, wait=False) as first:
        assert first
        with file_lock(path, wait=False) as second:
            assert not second
        with file_lock(path, shared=True, wait=False) as reader:
            assert not reader
    with file_lock(path, wait=True) as again:
        assert again


def test_training_sittings_share_the_speed_lock_and_keep_measuring_out(tmp_path):
    path = tmp_path / "exp" / ".speed.lock"
    with (
        file_lock(path, shared=True, wait=False) as one,
        file_lock(path, shared=True, wait=False) as two,
    ):
        assert one and two  # two sittings train side by side
        with file_lock(path, wait=False) as measuring:
            assert not measuring
    with file_lock(path, wait=False) as measuring:
        assert measuring  # the last sitting to finish measures


@pytest.mark.parametrize("only", [["single"], None])
def test_dry_run_of_a_shared_experiment_names_the_holder(tmp_path, glue_fixture_dir, only):
    exp = load_experiment(_experiment(tmp_path, glue_fixture_dir, ["single"]))
    rte = _run_folder(exp, "single/rte/seed0")
    with RunLock(rte):
        lines = run_experiment(exp, only=only, dry_run=True).report_lines
        assert f"running  single/rte/seed0  (process {RunLock.holder(rte)})" in lines


def test_a_training_sitting_keeps_inference_timing_out(
    tmp_path, glue_fixture_dir, monkeypatch, capsys
):
    exp = load_experiment(_experiment(tmp_path, glue_fixture_dir, ["single"]))
    speed_lock = Path(exp.output_dir) / pipeline.SPEED_LOCK_NAME
    original = pipeline._train_unfinished
    looked: list[bool] = []

    def train_and_look(*args, **kwargs):
        with file_lock(speed_lock, wait=False) as measuring:
            looked.append(measuring)
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline, "_train_unfinished", train_and_look)
    run_experiment(exp)
    assert looked == [False]  # a measurement could not start while this sitting trained
    # Nor may a user's `report --measure-speed` time inference beside a training sitting.
    with file_lock(speed_lock, shared=True, wait=False):
        assert main(["report", exp.output_dir, "--measure-speed"]) == 2
    assert "is training or measuring" in capsys.readouterr().err


def test_a_sitting_started_during_a_measurement_waits_for_it(tmp_path, glue_fixture_dir, caplog):
    exp = load_experiment(_experiment(tmp_path, glue_fixture_dir, ["single"]))
    speed_lock = Path(exp.output_dir) / pipeline.SPEED_LOCK_NAME
    caplog.set_level(logging.INFO, logger="bamkd")
    results = []
    with file_lock(speed_lock, wait=False) as measuring:
        assert measuring
        sitting = threading.Thread(target=lambda: results.append(run_experiment(exp)))
        sitting.start()
        deadline = time.monotonic() + 60
        while "measuring inference speed; waiting" not in caplog.text:
            assert time.monotonic() < deadline, "the sitting did not wait for the measurement"
            time.sleep(0.1)
        assert not results  # still waiting: nothing trained beside the timing
    sitting.join(timeout=300)
    assert results and sorted(results[0].trained) == ["single/mrpc/seed0", "single/rte/seed0"]


def test_a_run_finished_while_waiting_for_its_lock_is_not_trained_again(
    tmp_path, glue_fixture_dir, monkeypatch
):
    """train() looks at the finished state before taking the lock; the look under the lock
    decides, so a run another process finished in between keeps its results."""
    exp = load_experiment(_experiment(tmp_path, glue_fixture_dir, ["single"]))
    run = next(r for r in plan_experiment(exp) if r.id == "single/rte/seed0")
    cfg = from_dict(RunConfig, copy.deepcopy(run.config))
    metrics = train(cfg)
    state = (run.folder / "trainer_state.json").read_text()
    looks = []

    def first_look_misses(folder):  # the other process finishes just after this look
        looks.append(folder)
        return len(looks) > 1 and is_finished(folder)

    monkeypatch.setattr(train_module, "is_finished", first_look_misses)
    assert train(from_dict(RunConfig, copy.deepcopy(run.config)), resume=True) == metrics
    assert len(looks) == 2  # the second look is under the lock
    assert (run.folder / "trainer_state.json").read_text() == state
