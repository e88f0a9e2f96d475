"""The run manifest: what produced a run, so a result can be traced back and reproduced.

``<run>/run_manifest.json`` records, when training starts: the package versions (bamkd, torch,
transformers, accelerate, ...), the Python version, the git commit of the working directory (null
outside a git repository), the host, the command line, the resolved config, and a SHA-256
fingerprint of every data file the run reads (per task and split), the run's seed and its
teachers' seeds. A resumed run keeps the
earlier starts' manifests under ``previous_starts``. Nothing here may fail a run: a missing
package, no git, or an unreadable data file is recorded as null.
"""

from __future__ import annotations

import logging
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from bamkd.config import RunConfig
from bamkd.data import file_digest
from bamkd.errors import BamkdError
from bamkd.runtime.runs import task_specs
from bamkd.runtime.storage import read_json, write_json
from bamkd.tasks.tables import digest_files, hub_fingerprint, location_files, table_location

log = logging.getLogger(__name__)

MANIFEST_NAME = "run_manifest.json"
PACKAGES = ("bamkd", "torch", "transformers", "accelerate", "safetensors", "tokenizers", "numpy")
"""Distributions whose versions are recorded (null when not installed)."""


def write_run_manifest(
    run_dir: Path,
    cfg: RunConfig,
    data_files: Mapping[str, str],
    *,
    command: Sequence[str] | None = None,
) -> None:
    """Write ``run_dir/run_manifest.json`` (atomically), keeping earlier starts of the run.

    Args:
        run_dir: the run folder.
        cfg: the resolved config of the run.
        data_files: ``"task/split"`` -> path of every data file the run reads (see
            `run_data_files`).
        command: the command line; ``sys.argv`` of this process by default (recorded only,
            never interpreted).
    """
    path = Path(run_dir) / MANIFEST_NAME
    manifest = build_run_manifest(cfg, data_files, command=command)
    if path.is_file():
        try:
            old = read_json(path)
        except BamkdError as exc:
            log.warning("replacing an unreadable run manifest (%s)", exc)
        else:
            if isinstance(old, dict):
                earlier = old.pop("previous_starts", [])
                manifest["previous_starts"] = [*earlier, old]
    write_json(path, manifest)


def build_run_manifest(
    cfg: RunConfig,
    data_files: Mapping[str, str],
    *,
    command: Sequence[str] | None = None,
    cwd: str | Path | None = None,
) -> dict[str, Any]:
    """The manifest as a JSON-ready dict (see the module docstring)."""
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": list(sys.argv if command is None else command),
        "cwd": str(Path(cwd) if cwd is not None else Path.cwd()),
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": package_versions(),
        "git_commit": git_commit(cwd),
        "data": data_fingerprints(data_files),
        "seed": cfg.train.seed,
        "teacher_seeds": teacher_seeds(cfg),
        "config": cfg.to_dict(),
    }


def teacher_seeds(cfg: RunConfig) -> dict[str, list[int | None]]:
    """Per task, the train.seed of each teacher run (null where its config cannot be read), so
    a student's seed can be checked against its teachers'
    (bamkd.experiments.pipeline.STUDENT_SEED_OFFSET)."""
    from bamkd.config import load_yaml
    from bamkd.runtime.runs import CONFIG_NAME

    seeds: dict[str, list[int | None]] = {}
    for task, runs in cfg.distill.teachers.items():
        seeds[task] = []
        for run in runs:
            try:
                seed = load_yaml(Path(run) / CONFIG_NAME).get("train", {}).get("seed")
            except Exception:  # noqa: BLE001 - nothing here may fail a run
                seed = None
            seeds[task].append(seed if isinstance(seed, int) else None)
    return seeds


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of ``names`` plus ``python``; null for a package that is absent."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    return versions


def git_commit(cwd: str | Path | None = None) -> str | None:
    """``git rev-parse HEAD`` in ``cwd`` (default: the working directory); None if unavailable."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    if done.returncode != 0 or len(commit) < 40:
        return None
    return commit


def data_fingerprints(data_files: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``{"task/split": {"path", "sha256", "bytes"}}``; sha256 and bytes are null if unreadable."""
    out: dict[str, dict[str, Any]] = {}
    for key, file in data_files.items():
        if file.startswith("hub:"):
            # A hub split: its `datasets` fingerprint, as the token cache keys it.
            out[key] = {"path": file, "sha256": hub_fingerprint(file), "bytes": None}
            continue
        path = Path(file)
        entry: dict[str, Any] = {"path": str(path.resolve()), "sha256": None, "bytes": None}
        try:
            if path.is_file():
                entry["sha256"] = file_digest(path)
                entry["bytes"] = path.stat().st_size
            else:  # Parquet shards or a save_to_disk split folder
                files = location_files(path)
                if not files:
                    raise FileNotFoundError(2, "no data files", str(path))
                entry["sha256"] = digest_files(files)
                entry["bytes"] = sum(f.stat().st_size for f in files)
        except OSError as exc:
            log.warning("run manifest: cannot fingerprint %s (%s)", path, exc)
        out[key] = entry
    return out


def run_data_files(cfg: RunConfig) -> dict[str, str]:
    """``"task/split"`` -> path of the training and evaluation files ``cfg`` reads."""
    files: dict[str, str] = {}
    try:
        specs = task_specs(cfg.data)
    except BamkdError as exc:
        log.warning("run manifest: no data fingerprints (%s)", exc)
        return files
    for name, spec in specs.items():
        for split in ("train", *spec.eval_splits):
            if split not in spec.splits:
                continue
            try:
                files[f"{name}/{split}"] = table_location(spec, split, cfg.data.glue_dir)
            except BamkdError as exc:
                log.warning("run manifest: no fingerprint for %s/%s (%s)", name, split, exc)
    return files
