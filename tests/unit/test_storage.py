"""Crash-safe writes and run-folder locking."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bamkd.errors import BamkdError
from bamkd.storage import (
    RunLock,
    atomic_dir,
    atomic_path,
    read_json,
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
