"""Crash-safe file writing and run-folder locking.

Everything bamkd writes (checkpoints, teacher predictions, caches, reports) goes to a temporary
name in the same folder and is renamed into place, so a process killed mid-write leaves the
previous good file, never a truncated one. A lock file keeps two processes from writing one run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bamkd.errors import BamkdError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# The names atomic_path and atomic_dir give their temporary files and folders: ".NAME.tmpPID"
# while writing, ".NAME.oldPID" for the previous copy during a replace.
_TEMPORARY = re.compile(r"^\..+\.(tmp|old)\d+$")


def _temporary_name(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{kind}{os.getpid()}")


_OS_ERROR_TEXT = re.compile(r"\(os error (\d+)\)")


def _write_failure(exc: Exception, path: Path) -> OSError | None:
    """The file-system failure behind a failed write, naming ``path`` (not the hidden temporary
    name); None when it was something else.

    safetensors reports a full disk as its own error type whose text ends in "(os error 28)".
    """
    if isinstance(exc, OSError):
        code = exc.errno
    else:
        match = _OS_ERROR_TEXT.search(str(exc))
        code = int(match.group(1)) if match else None
    if code not in _FILESYSTEM_FIXES:
        return None
    return OSError(code, os.strerror(code), str(path))


@contextlib.contextmanager
def _as_write_failure(path: Path) -> Iterator[None]:
    """Turn a full disk or a read-only folder met while writing ``path`` into `_write_failure`'s
    OSError naming ``path``; other errors pass unchanged."""
    try:
        yield
    except Exception as exc:
        failure = _write_failure(exc, path)
        if failure is None:
            raise
        raise failure from exc


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path; on success it is fsynced and renamed to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path, "tmp")
    try:
        with _as_write_failure(path):
            yield tmp
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            # Some writers create private (0600) files; give results the usual permissions.
            os.chmod(tmp, 0o666 & ~_UMASK)
            os.replace(tmp, path)
            _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete what interrupted atomic writes left in ``folder`` and below; return the paths.

    Only names this module makes are touched (``.NAME.tmpPID``, ``.NAME.oldPID``). Call it only
    while holding the folder's `RunLock`: a write in progress by another process looks the same.
    """
    folder = Path(folder)
    removed: list[Path] = []
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            if not _TEMPORARY.match(name):
                continue
            path = Path(root) / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
                dirs.remove(name)  # nothing below it to visit any more
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return sorted(removed)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` as UTF-8 with \n line ends on every platform (GLUE's server wants them)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    """Read JSON, naming the file when it is missing or damaged."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BamkdError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BamkdError(
            f"{path} is corrupted or truncated ({exc}); delete it or restore it"
        ) from None


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path, "tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        with _as_write_failure(path):
            yield tmp
            for child in tmp.iterdir():
                if child.is_file():
                    with open(child, "rb+") as f:
                        os.fsync(f.fileno())
            if path.exists():
                # Rename the old folder aside first: at every instant one complete copy exists.
                old = _temporary_name(path, "old")
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
            _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def check_output_folder(path: str | Path, key: str) -> None:
    """Refuse, before anything is created, an output folder that cannot be written.

    ``path`` may not exist yet; then its nearest existing parent must be a writable folder.
    Raises BamkdError naming ``key``, the path and the fix. (A full disk shows only when writing;
    `filesystem_error` words that case.)
    """
    path = Path(path).expanduser().absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a dangling link: mkdir would fail on it
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is" if existing == path else f"lies under {existing}, which is"
        raise BamkdError(
            f"{key}={path} {where} a file, not a folder; remove or move that file, or choose "
            f"another {key}"
        )
    if not existing.exists():
        raise BamkdError(f"{key}={path} cannot be created; choose another {key}")
    if _read_only_mount(existing):
        raise BamkdError(
            f"{key}={path}: {existing} is on a read-only file system; choose a writable {key}"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BamkdError(
            f"{key}={path}: permission denied to write in {existing}; choose a folder you can "
            f"write to as {key}, or fix its permissions"
        )


def _read_only_mount(folder: Path) -> bool:
    """Whether ``folder`` is on a read-only mount (os.access says yes to root even there)."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


_FILESYSTEM_FIXES = {
    errno.ENOSPC: "free some disk space or use a folder on another disk, then run again",
    errno.EDQUOT: "free some of your disk quota or use another folder, then run again",
    errno.EROFS: "use a folder on a writable file system (copy the run there first if needed)",
    errno.EACCES: "use a folder you can write to, or fix its permissions",
    errno.EPERM: "use a folder you can write to, or fix its permissions",
    errno.ENOTDIR: "a file stands where a folder is needed; move it or choose another path",
    errno.EEXIST: "a file stands where a folder is needed; move it or choose another path",
    errno.EISDIR: "a folder stands where a file is needed; move it or choose another path",
    errno.ENAMETOOLONG: "choose a shorter path",
}
"""File-system failures a user fixes outside bamkd, and how."""


def filesystem_error(exc: OSError) -> BamkdError | None:
    """One line naming the path and the fix for a file-system failure; None for other errors.

    Used by the CLI for failures no earlier check could foresee (a disk that fills mid-run);
    anything a run has written stays consistent because every write is atomic.
    """
    fix = _FILESYSTEM_FIXES.get(exc.errno or 0)
    if fix is None:
        return None
    where = exc.filename if exc.filename is not None else "a file bamkd was writing"
    reason = exc.strerror or os.strerror(exc.errno or 0)
    return BamkdError(f"{where}: {reason}; {fix}")


class RunInUse(BamkdError):
    """Another process holds the run folder's lock (it is training that run)."""

    def __init__(self, folder: Path, holder: str) -> None:
        super().__init__(
            f"run folder {folder} is in use by process {holder}; wait for it to finish or "
            "choose another output_dir"
        )
        self.holder = holder


class RunLock:
    """An exclusive lock on a run folder, released when the process ends (even by SIGKILL)."""

    FILE_NAME = ".lock"

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / self.FILE_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _flock_within(fd, seconds=1.0):
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunInUse(self.path.parent, holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    @staticmethod
    def holder(folder: str | Path) -> str | None:
        """The process id holding ``folder``'s lock, or None when no process holds it.

        Takes no lock and creates nothing: on Linux it reads the kernel's lock table
        (/proc/locks); elsewhere it takes the lock shared for an instant, which a run starting
        in that instant waits out (``acquire`` retries for a second).
        """
        path = Path(folder) / RunLock.FILE_NAME
        try:
            st = path.stat()
        except OSError:
            return None
        table = _kernel_locks()
        if table is not None:
            key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
            return table.get(key)
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.read(fd, 64).decode(errors="replace").strip() or "another process"
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def file_lock(path: Path, *, wait: bool, shared: bool = False) -> Iterator[bool]:
    """Hold a lock on the file ``path`` (created if missing) for the block: exclusive, or
    ``shared`` with other shared holders.

    ``wait``: block until it can be had; otherwise yield False at once (holding nothing) when
    another process's lock is in the way. For the steps of an experiment that several
    ``bamkd run`` sittings may reach at once (merging plan.json; measuring speed, exclusive,
    while no sitting trains, shared).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        try:
            fcntl.flock(fd, mode if wait else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def _flock_within(fd: int, seconds: float) -> bool:
    """Take an exclusive lock on ``fd``, retrying for ``seconds`` (a status probe may hold it
    shared for an instant); False if another process still holds it."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def _kernel_locks() -> dict[str, str] | None:
    """Linux's flock table: ``major:minor:inode`` (hex, hex, decimal) -> pid holding an
    exclusive lock; None where /proc/locks cannot be read."""
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    held = {}
    for line in lines:
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 25049 08:01:1234 0 EOF"; "->" marks a blocked waiter.
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[3] == "WRITE":
            held[parts[5]] = parts[4]
    return held


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
