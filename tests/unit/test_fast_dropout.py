"""Fast CPU dropout: drop rate, scaling, gradients, seeding, and the attention it reroutes."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from bamkd.fast_dropout import (
    ATTENTION_NAME,
    FastDropout,
    _attention,
    fast_dropout,
    install_fast_dropout,
    keep_mask,
)
from bamkd.model import MultiTaskModel, load_encoder
from bamkd.tasks import get_task


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_mask_keeps_one_minus_p(p: float) -> None:
    torch.manual_seed(0)
    n = 400_001  # odd: the last int64 draw is half used
    kept = keep_mask((n,), p, torch.device("cpu")).double().mean().item()
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(kept - (1 - p)) < 5 * sigma


def test_keep_mask_extremes_and_shape() -> None:
    cpu = torch.device("cpu")
    assert keep_mask((3, 5), 0.0, cpu).all()
    assert not keep_mask((3, 5), 1.0, cpu).any()
    assert keep_mask((2, 3, 7), 0.3, cpu).shape == (2, 3, 7)


def test_masks_follow_the_global_seed() -> None:
    torch.manual_seed(7)
    a = keep_mask((1000,), 0.1, torch.device("cpu"))
    torch.manual_seed(7)
    b = keep_mask((1000,), 0.1, torch.device("cpu"))
    torch.manual_seed(8)
    c = keep_mask((1000,), 0.1, torch.device("cpu"))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_scales_kept_values_and_routes_gradients_through_the_same_mask(dtype) -> None:
    torch.manual_seed(0)
    x = (torch.rand(64, 48) + 0.5).to(dtype).requires_grad_()
    out = fast_dropout(x, 0.25)
    kept = out != 0
    assert 0.6 < kept.float().mean().item() < 0.9
    expected = (x.detach() / 0.75).to(dtype)
    assert torch.allclose(out[kept].float(), expected[kept].float(), rtol=1e-2)
    weights = torch.randn(64, 48).to(dtype)
    (out * weights).sum().backward()
    assert torch.allclose(x.grad.float(), (weights / 0.75 * kept).to(dtype).float(), rtol=1e-2)


def test_no_dropout_when_evaluating_or_p_is_zero() -> None:
    x = torch.randn(5, 5)
    assert fast_dropout(x, 0.3, training=False) is x
    assert fast_dropout(x, 0.0) is x
    assert torch.equal(fast_dropout(x, 1.0), torch.zeros_like(x))
    layer = FastDropout(0.3).eval()
    assert torch.equal(layer(x), x)


def test_attention_math_matches_sdpa_for_boolean_and_additive_masks() -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))
    allowed = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    allowed[1, :, :, 3:] = False  # second sequence: last two tokens are padding
    module = nn.Module()
    module.is_causal = False
    reference, _ = _attention(module, q, k, v, allowed, dropout=0.0)  # SDPA's kernel
    # A drop probability below 2^-33 keeps every element: the math path without dropout.
    ours, weights = _attention(module, q, k, v, allowed, dropout=1e-12)
    assert torch.allclose(ours, reference, atol=1e-5)
    assert torch.all(weights[1, :, :, 3:] == 0)
    additive = torch.zeros(2, 1, 5, 5).masked_fill(~allowed, torch.finfo(torch.float32).min)
    ours_additive, _ = _attention(module, q, k, v, additive, dropout=1e-12)
    assert torch.allclose(ours_additive, reference, atol=1e-5)


def _tiny_model(tiny_encoder) -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel(load_encoder(str(tiny_encoder)), [get_task("rte"), get_task("stsb")])


def test_install_swaps_every_dropout_and_keeps_evaluation_outputs(tiny_encoder, tmp_path) -> None:
    model = _tiny_model(tiny_encoder).eval()
    ids = torch.randint(5, 100, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[0, 6:] = 0
    before = model(input_ids=ids, attention_mask=mask)
    dropouts = sum(type(m) is nn.Dropout for m in model.modules())
    assert install_fast_dropout(model) == dropouts > 0
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert model.encoder.config._attn_implementation == ATTENTION_NAME
    after = model(input_ids=ids, attention_mask=mask)
    for task in before:
        assert torch.allclose(before[task], after[task], atol=1e-5)

    # Training draws masks from the global generator: same seed, same output; and the saved
    # encoder config does not name an attention function only bamkd registers.
    model.train()
    torch.manual_seed(3)
    a = model(input_ids=ids, attention_mask=mask)
    torch.manual_seed(3)
    b = model(input_ids=ids, attention_mask=mask)
    torch.manual_seed(4)
    c = model(input_ids=ids, attention_mask=mask)
    assert torch.equal(a["rte"], b["rte"]) and not torch.equal(a["rte"], c["rte"])
    model.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert ATTENTION_NAME not in json.dumps(saved)
