"""Training on packed batches: the same model as on padded batches, the padding it saves, and
the fall-back for encoders that cannot take packed input."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from bamkd.config import build_config
from bamkd.train import _packing, train


def _overrides(demo_suite, out: Path, *extra: str) -> list[str]:
    tasks = ["demo_sentiment", "demo_rating", "demo_agreement"]
    return [
        f"data.task_files=[{','.join(demo_suite[t] for t in tasks)}]",
        f"data.tasks=[{','.join(tasks)}]",
        "data.train_limit=40",
        "data.eval_limit=16",
        "data.length_grouped=false",
        "train.epochs=1",
        "train.batch_size=16",
        "train.log_every=1",
        # Without dropout the two layouts compute the same function, so training must agree.
        "model.dropout=0.0",
        "model.encoder_dropout=0.0",
        f"output_dir={out}",
        *extra,
    ]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "bamkd_model.safetensors"))


def _records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "loss" in r]


@pytest.mark.parametrize("accumulation", [1, 2])
def test_packed_training_matches_padded_training(demo_suite, tmp_path, accumulation):
    """Also with gradient accumulation: each micro-batch is packed on its own, and the summed
    loss gives the step the same gradient."""
    padded, packed = tmp_path / "padded", tmp_path / "packed"
    train(build_config("tiny", _overrides(demo_suite, padded, "data.packing=false")))
    train(
        build_config(
            "tiny",
            _overrides(
                demo_suite,
                packed,
                "data.packing=true",
                f"train.grad_accumulation={accumulation}",
            ),
        )
    )
    a, b = _weights(padded), _weights(packed)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-3, atol=1e-5, msg=name)
    rec_a, rec_b = _records(padded), _records(packed)
    for ra, rb in zip(rec_a, rec_b, strict=True):
        for task, loss in ra["loss"].items():
            assert rb["loss"][task] == pytest.approx(loss, rel=1e-4, abs=1e-6)
    # Packed rows leave almost nothing unused; mixed padded batches waste a good share.
    packed_padding = sum(r["padding"] for r in rec_b) / len(rec_b)
    padded_padding = sum(r["padding"] for r in rec_a) / len(rec_a)
    # (Deterministic: about 0.1 packed against 0.34 padded; 0.17 in micro-batches of 8.)
    assert packed_padding < 0.6 * padded_padding
    assert all(r["tokens_per_s"] > 0 for r in rec_b)


def test_an_encoder_that_cannot_pack_falls_back_to_padding_with_one_warning(caplog):
    cfg = build_config("tiny", ["data.tasks=[mrpc]", "data.length_grouped=false"])
    encoder = SimpleNamespace(config=SimpleNamespace(model_type="distilbert"))
    with caplog.at_level(logging.WARNING, logger="bamkd.train"):
        assert _packing(cfg, encoder) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "distilbert" in warnings[0] and "padded" in warnings[0]


def test_packing_applies_to_mixed_batches_only():
    bert = SimpleNamespace(config=SimpleNamespace(model_type="bert", _attn_implementation="sdpa"))
    mixed = build_config("tiny", ["data.tasks=[mrpc]", "data.length_grouped=false"])
    grouped = build_config("tiny", ["data.tasks=[mrpc]", "data.length_grouped=true"])
    off = build_config("tiny", ["data.tasks=[mrpc]", "data.packing=false"])
    assert _packing(mixed, bert) == 0
    assert _packing(grouped, bert) is None
    assert _packing(off, bert) is None


def test_packed_training_in_bf16_with_dropout_trains(demo_suite, tmp_path):
    out = tmp_path / "bf16"
    overrides = _overrides(demo_suite, out, "train.mixed_precision=bf16", "train.epochs=2")
    overrides = [o for o in overrides if "dropout" not in o]  # the preset's dropout, fast path
    metrics = train(build_config("tiny", overrides))
    records = _records(out)
    assert all(torch.isfinite(torch.tensor(list(r["loss"].values()))).all() for r in records)
    assert records[-1]["padding"] < 0.2
    assert set(metrics) == {"demo_sentiment", "demo_rating", "demo_agreement"}
