"""Shared test fixtures: an isolated cache, the demo suite, the GLUE fixtures, a tiny encoder.

The token cache and the tiny encoder live in one temporary folder per test session, so tests
never read or write the user's ~/.cache/bamkd and the tiny encoder is built only once.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_CACHE = tempfile.mkdtemp(prefix="bamkd-test-cache-")
os.environ["BAMKD_CACHE"] = _SESSION_CACHE
os.environ.setdefault("BAMKD_PROGRESS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_GLUE = Path(__file__).resolve().parents[2] / "shared" / "glue"


def _materialize_glue_fixtures() -> Path:
    """The fixture GLUE folder, assembled in the session cache.

    The AX rows are kept as tests/fixtures/ax_rows.tsv (our own invented rows) and placed at the
    standard path diagnostic/diagnostic.tsv here, so no tracked file carries a shared GLUE name.
    """
    import shutil

    folder = Path(_SESSION_CACHE) / "glue-fixtures"
    shutil.copytree(FIXTURES / "glue", folder)
    (folder / "diagnostic").mkdir()
    shutil.copyfile(FIXTURES / "ax_rows.tsv", folder / "diagnostic" / "diagnostic.tsv")
    return folder


GLUE_FIXTURES = _materialize_glue_fixtures()
os.environ["BAMKD_TEST_GLUE_FIXTURES"] = str(GLUE_FIXTURES)


@pytest.fixture(scope="session")
def glue_fixture_dir() -> Path:
    """A few rows per GLUE task in the real file layouts (written for these tests)."""
    return GLUE_FIXTURES


@pytest.fixture(scope="session")
def demo_suite(tmp_path_factory) -> dict[str, str]:
    """The package's synthetic task suite: task name -> task YAML path."""
    from bamkd.demo import write_demo_suite

    folder = tmp_path_factory.mktemp("demo-suite")
    return {p.stem: str(p) for p in write_demo_suite(folder)}


@pytest.fixture(scope="session")
def tiny_encoder() -> Path:
    from bamkd.tiny import ensure_tiny_encoder

    return ensure_tiny_encoder()


@pytest.fixture(scope="session")
def tiny_run(demo_suite, tmp_path_factory) -> Path:
    """A tiny trained run: two classification tasks (single, pair) and one regression task."""
    from bamkd.config import build_config
    from bamkd.train import train

    tasks = ["demo_sentiment", "demo_agreement", "demo_rating"]
    out = tmp_path_factory.mktemp("tiny-run") / "run"
    cfg = build_config(
        "tiny",
        [
            f"data.task_files=[{','.join(demo_suite[t] for t in tasks)}]",
            f"data.tasks=[{','.join(tasks)}]",
            "data.train_limit=24",
            "data.eval_limit=8",
            "train.epochs=1",
            f"output_dir={out}",
        ],
    )
    train(cfg)
    return out
