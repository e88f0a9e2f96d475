"""Where an unfinished run stands, as `bamkd run --dry-run` shows it: its newest checkpoint,
its last logged step, and whether a process is training it (the run folder's lock), all read
without creating or loading anything."""

from __future__ import annotations

import json
import os

from bamkd.experiments.pipeline import PlannedRun, _plan_line
from bamkd.runtime.runs import run_progress
from bamkd.runtime.storage import RunLock


def _run(folder) -> PlannedRun:
    return PlannedRun("bam/seed0", "bam", ["cola"], 0, {"output_dir": str(folder)})


def _checkpoint(folder, step: int, total: int) -> None:
    ckpt = folder / "checkpoints" / f"step-{step:08d}"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"step": step, "total_steps": total}))


def test_a_folder_never_locked_has_no_holder_and_gets_no_lock_file(tmp_path):
    assert RunLock.holder(tmp_path) is None
    assert not (tmp_path / ".lock").exists()


def test_the_holder_is_the_process_holding_the_lock_and_none_after_release(tmp_path):
    lock = RunLock(tmp_path).acquire()
    try:
        assert RunLock.holder(tmp_path) == str(os.getpid())
    finally:
        lock.release()
    assert RunLock.holder(tmp_path) is None
    RunLock(tmp_path).acquire().release()  # the probe left the lock free


def test_the_holder_comes_from_the_kernel_lock_table_without_locking(tmp_path, monkeypatch):
    import fcntl

    lock = RunLock(tmp_path).acquire()
    calls = []
    real = fcntl.flock
    monkeypatch.setattr(fcntl, "flock", lambda fd, op: calls.append(op) or real(fd, op))
    try:
        assert RunLock.holder(tmp_path) == str(os.getpid())
    finally:
        monkeypatch.undo()
        lock.release()
    assert calls == []  # read from /proc/locks: no probe that could race a starting run


def test_acquire_waits_out_a_brief_probe(tmp_path):
    import fcntl
    import threading

    RunLock(tmp_path).acquire().release()
    fd = os.open(tmp_path / ".lock", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)  # a status probe in another process, held 0.3 s
    threading.Timer(0.3, lambda: (fcntl.flock(fd, fcntl.LOCK_UN), os.close(fd))).start()
    RunLock(tmp_path).acquire().release()


def test_progress_reads_the_newest_complete_checkpoint_and_the_last_logged_step(tmp_path):
    _checkpoint(tmp_path, 200, 4584)
    _checkpoint(tmp_path, 1400, 4584)
    (tmp_path / "checkpoints" / "step-00001600").mkdir()  # being written: no state yet
    log = [{"step": s, "loss": {"cola": 0.5}} for s in (1450, 1500)]
    (tmp_path / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in log) + '{"step": 15'  # a line cut short
    )
    at = run_progress(tmp_path)
    assert (at.checkpoint_step, at.total_steps, at.logged_step, at.holder) == (
        1400,
        4584,
        1500,
        None,
    )


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_a_resume_loads(tmp_path):
    _checkpoint(tmp_path, 1400, 4584)
    _checkpoint(tmp_path, 1600, 4584)
    (tmp_path / "checkpoints" / "step-00001600" / "trainer_state.json").write_text("{not json")
    assert run_progress(tmp_path).checkpoint_step == 1400


def test_only_the_tail_of_a_long_log_is_read(tmp_path):
    lines = [json.dumps({"step": s, "note": "x" * 200}) for s in range(1, 200)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert run_progress(tmp_path).logged_step == 199


def test_dry_run_lines_say_todo_resumes_and_running(tmp_path):
    assert _plan_line(_run(tmp_path)) == "todo  bam/seed0"
    _checkpoint(tmp_path, 1400, 4584)
    assert _plan_line(_run(tmp_path)) == (
        "todo  bam/seed0  (resumes from its checkpoint at step 1400 of 4584)"
    )
    with RunLock(tmp_path):
        # A log line from before this sitting took the lock (a stopped run, past its
        # checkpoint) does not count; the resumed run starts from the checkpoint.
        (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1500}) + "\n")
        old = (tmp_path / ".lock").stat().st_mtime - 60
        os.utime(tmp_path / "metrics.jsonl", (old, old))
        assert _plan_line(_run(tmp_path)) == (
            f"running  bam/seed0  (process {os.getpid()}: step 1400 of 4584)"
        )
        (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1450}) + "\n")
        assert _plan_line(_run(tmp_path)) == (
            f"running  bam/seed0  (process {os.getpid()}: step 1450 of 4584)"
        )
    (tmp_path / "trainer_state.json").write_text(json.dumps({"finished": True}))
    assert _plan_line(_run(tmp_path)) == "done  bam/seed0"
