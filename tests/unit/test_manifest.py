"""The run manifest: versions, git commit, host, command line and data fingerprints."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bamkd
from bamkd.config import build_config
from bamkd.runtime import manifest as manifest_mod
from bamkd.runtime.manifest import (
    MANIFEST_NAME,
    git_commit,
    package_versions,
    run_data_files,
    write_run_manifest,
)

TASKS = ["demo_sentiment", "demo_agreement"]


@pytest.fixture
def cfg(demo_suite, tmp_path):
    files = ",".join(demo_suite[t] for t in TASKS)
    return build_config(
        "tiny",
        [f"data.task_files=[{files}]", f"data.tasks=[{','.join(TASKS)}]", f"output_dir={tmp_path}"],
    )


def test_manifest_records_versions_host_command_config_and_data(cfg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not a git repository
    files = run_data_files(cfg)
    assert set(files) == {"demo_sentiment/train", "demo_sentiment/dev", "demo_agreement/train",
                          "demo_agreement/dev"}  # fmt: skip
    write_run_manifest(tmp_path, cfg, files, command=["bamkd", "train", "--config", "tiny"])
    data = json.loads((tmp_path / MANIFEST_NAME).read_text())

    versions = data["versions"]
    assert versions["bamkd"] == bamkd.__version__
    for name in ("torch", "transformers", "accelerate", "python"):
        assert isinstance(versions[name], str) and versions[name][0].isdigit(), name
    import torch

    assert versions["torch"] == torch.__version__
    assert data["python"] == versions["python"]
    assert data["git_commit"] is None
    assert data["hostname"] and data["created"].endswith("+00:00")
    assert data["command"] == ["bamkd", "train", "--config", "tiny"]
    assert data["config"] == cfg.to_dict()
    for key, path in files.items():
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        assert data["data"][key]["sha256"] == digest, key
        assert data["data"][key]["bytes"] > 0
    assert "previous_starts" not in data


def test_default_command_is_this_process_argv(cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bamkd", "train", "--resume"])
    write_run_manifest(tmp_path, cfg, {})
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["command"] == sys.argv


def test_a_resumed_run_keeps_earlier_starts(cfg, tmp_path):
    write_run_manifest(tmp_path, cfg, {}, command=["first"])
    write_run_manifest(tmp_path, cfg, {}, command=["second"])
    write_run_manifest(tmp_path, cfg, {}, command=["third"])
    data = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert data["command"] == ["third"]
    assert [m["command"] for m in data["previous_starts"]] == [["first"], ["second"]]
    assert all("previous_starts" not in m for m in data["previous_starts"])


def test_missing_data_file_is_recorded_not_fatal(cfg, tmp_path):
    write_run_manifest(tmp_path, cfg, {"x/train": str(tmp_path / "gone.tsv")})
    entry = json.loads((tmp_path / MANIFEST_NAME).read_text())["data"]["x/train"]
    assert entry["sha256"] is None and entry["path"].endswith("gone.tsv")


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_commit_of_the_working_directory(tmp_path):
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    assert git_commit(tmp_path) is None  # not a repository yet
    git("init", "-q")
    assert git_commit(tmp_path) is None  # a repository without commits
    git("commit", "-q", "--allow-empty", "-m", "start")
    assert git_commit(tmp_path) == git("rev-parse", "HEAD")


def test_git_commit_is_null_without_git(monkeypatch, tmp_path):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(manifest_mod.subprocess, "run", no_git)
    assert git_commit(tmp_path) is None


def test_absent_packages_are_null():
    versions = package_versions(["bamkd", "surely-not-an-installed-package"])
    assert versions["bamkd"] == bamkd.__version__
    assert versions["surely-not-an-installed-package"] is None
