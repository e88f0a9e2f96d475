"""Crash-safe writes and run-folder locking."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from bamkd.errors import BamkdError
from bamkd.runtime.storage import (
    RunLock,
    atomic_dir,
    atomic_path,
    check_output_folder,
    filesystem_error,
    read_json,
    remove_stale_temporaries,
    write_json,
    write_text,
)


class Boom(RuntimeError):
    pass


def test_atomic_path_replaces_on_success(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.txt"  # parent folder is created
    with atomic_path(target) as tmp:
        assert tmp != target and tmp.parent == target.parent
        tmp.write_text("new", encoding="utf-8")
        assert not target.exists()  # nothing visible until the body finishes
    assert target.read_text(encoding="utf-8") == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.txt"]


def test_atomic_path_keeps_the_old_file_when_the_body_raises(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_text("half-writ", encoding="utf-8")
        raise Boom
    assert target.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]  # temp file removed


def test_write_and_read_json_round_trip(tmp_path: Path) -> None:
    data = {"a": 1, "b": [1.5, None, "x"], "c": {"nested": True}, "ü": "ñ"}
    path = tmp_path / "d.json"
    write_json(path, data)
    assert read_json(path) == data
    assert path.read_text(encoding="utf-8").endswith("\n")
    write_json(path, [1, 2])  # overwrite
    assert read_json(path) == [1, 2]


def test_read_json_on_truncated_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_text(path, '{"step": 12, "total_steps"')
    with pytest.raises(BamkdError, match="state.json") as info:
        read_json(path)
    assert str(path) in str(info.value)
    assert "corrupted or truncated" in str(info.value)


def test_read_json_on_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(BamkdError, match="absent.json"):
        read_json(path)


def test_read_json_on_binary_garbage_names_it(tmp_path: Path) -> None:
    path = tmp_path / "bin.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(BamkdError, match="bin.json"):
        read_json(path)


def test_run_lock_refuses_a_second_holder(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    first = RunLock(folder).acquire()
    try:
        assert (folder / ".lock").read_text() == str(os.getpid())
        # flock is per open file description: a second open in this process still conflicts.
        with pytest.raises(BamkdError, match="in use") as info:
            RunLock(folder).acquire()
        assert str(folder) in str(info.value)
        assert str(os.getpid()) in str(info.value)  # the holder's pid, read from the lock file
    finally:
        first.release()
    # Released: another object may take it now, also through the context manager.
    with RunLock(folder), pytest.raises(BamkdError):
        RunLock(folder).acquire()
    RunLock(folder).acquire().release()


def test_run_lock_release_is_idempotent(tmp_path: Path) -> None:
    lock = RunLock(tmp_path).acquire()
    lock.release()
    lock.release()


def test_atomic_dir_creates_a_new_folder(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        assert tmp != target
        (tmp / "w.bin").write_bytes(b"abc")
        assert not target.exists()
    assert (target / "w.bin").read_bytes() == b"abc"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_dir_replaces_a_folder_and_leaves_no_temp_folders(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.bin").write_bytes(b"old")
    (target / "shared.txt").write_text("old", encoding="utf-8")
    with atomic_dir(target) as tmp:
        (tmp / "shared.txt").write_text("new", encoding="utf-8")
        (tmp / "nested").mkdir()
        (tmp / "nested" / "x").write_text("x", encoding="utf-8")
        assert (target / "old.bin").exists()  # the old copy stays until the swap
    assert sorted(p.name for p in target.iterdir()) == ["nested", "shared.txt"]
    assert (target / "shared.txt").read_text(encoding="utf-8") == "new"
    assert (target / "nested" / "x").read_text(encoding="utf-8") == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no .tmp / .old left


def test_atomic_dir_keeps_the_old_folder_when_the_body_raises(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.bin").write_bytes(b"old")
    with pytest.raises(Boom), atomic_dir(target) as tmp:
        (tmp / "new.bin").write_bytes(b"new")
        raise Boom
    assert sorted(p.name for p in target.iterdir()) == ["old.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_dir_clears_a_stale_temp_folder(tmp_path: Path) -> None:
    # A previous crash of this same pid (or pid reuse) left the temp folder behind.
    stale = tmp_path / f".model.tmp{os.getpid()}"
    stale.mkdir()
    (stale / "junk").write_text("junk", encoding="utf-8")
    with atomic_dir(tmp_path / "model") as tmp:
        assert list(tmp.iterdir()) == []
        (tmp / "a").write_text("a", encoding="utf-8")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


# ----- leftovers of interrupted writes, and file-system faults (issue 15) ---------------------


def test_stale_temporaries_are_removed_by_their_names_only(tmp_path: Path) -> None:
    ours = [
        tmp_path / ".config.yaml.tmp123",
        tmp_path / ".model.tmp4242",
        tmp_path / ".model.old77",
        tmp_path / "checkpoints" / ".step-00000004.tmp9",
        tmp_path / "teacher_predictions" / ".mrpc.safetensors.tmp31",
    ]
    others = [
        tmp_path / ".lock",
        tmp_path / "notes.tmp1",  # not hidden
        tmp_path / ".model.tmp",  # no process id
        tmp_path / ".model.tmpfile",
        tmp_path / "checkpoints" / "step-00000004" / "model.safetensors",
        tmp_path / ".hidden",
    ]
    for path in ours[1:4]:
        (path / "sub").mkdir(parents=True)
        (path / "sub" / "weights").write_bytes(b"x")
    for path in [ours[0], ours[4], *others]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == sorted(ours)
    assert not any(p.exists() for p in ours)
    assert all(p.exists() for p in others)
    assert remove_stale_temporaries(tmp_path) == []


def test_interrupted_atomic_writes_leave_names_the_cleanup_knows(tmp_path: Path) -> None:
    """A SIGKILL skips the `finally` that deletes the temporary; copy each temporary mid-write
    under another process id (a dead writer's leftover) and check the cleanup finds it."""
    import shutil

    target = tmp_path / "checkpoints" / "step-00000002"
    with atomic_dir(target) as tmp:
        (tmp / "w").write_text("x")
        shutil.copytree(tmp, tmp.with_name(f"{tmp.name}0"))
    with atomic_path(tmp_path / "config.yaml") as tmp:
        tmp.write_text("a")
        shutil.copy(tmp, tmp.with_name(f"{tmp.name}0"))
    assert len(remove_stale_temporaries(tmp_path)) == 2
    assert (target / "w").is_file() and (tmp_path / "config.yaml").is_file()


def test_output_folder_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(BamkdError, match=rf"^output_dir={f} is a file, not a folder; "):
        check_output_folder(f, "output_dir")
    with pytest.raises(
        BamkdError, match=rf"^--out={f / 'a' / 'b'} lies under {f}, which is a file"
    ):
        check_output_folder(f / "a" / "b", "--out")
    assert f.read_text() == "x"


def test_output_folder_read_only_or_not_writable(tmp_path: Path, monkeypatch) -> None:
    import bamkd.runtime.storage as storage

    check_output_folder(tmp_path / "new" / "run", "output_dir")  # fine, and creates nothing
    assert not (tmp_path / "new").exists()
    monkeypatch.setattr(storage, "_read_only_mount", lambda folder: True)
    with pytest.raises(BamkdError, match=rf"{tmp_path} is on a read-only file system; choose"):
        check_output_folder(tmp_path / "run", "output_dir")
    monkeypatch.setattr(storage, "_read_only_mount", lambda folder: False)
    monkeypatch.setattr(storage.os, "access", lambda path, mode: False)
    with pytest.raises(BamkdError, match=rf"permission denied to write in {tmp_path}; choose"):
        check_output_folder(tmp_path / "run", "output_dir")


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        (errno.ENOSPC, "free some disk space"),
        (errno.EROFS, "writable file system"),
        (errno.EACCES, "fix its permissions"),
        (errno.ENOTDIR, "a file stands where a folder is needed"),
    ],
)
def test_filesystem_errors_become_one_line_naming_the_path(code: int, fix: str) -> None:
    error = filesystem_error(OSError(code, os.strerror(code), "/runs/x/model"))
    assert error is not None and str(error).startswith("/runs/x/model: ") and fix in str(error)
    assert "\n" not in str(error)
    assert filesystem_error(OSError(errno.EIO, "I/O error", "/x")) is None  # a real fault


@pytest.mark.parametrize("native", [True, False])
def test_a_full_disk_while_writing_names_the_target_not_the_temporary(
    tmp_path: Path, native: bool
) -> None:
    """safetensors words a full disk as its own error type with "(os error 28)"."""
    target = tmp_path / "model"
    with pytest.raises(OSError) as err, atomic_dir(target):
        if native:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".x.tmp1"))
        raise RuntimeError("Error while serializing: I/O error: No space left (os error 28)")
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []  # the temporary folder went too
