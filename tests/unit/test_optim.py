"""BERT-style optimisation (BAM_SPEC.md, "Optimisation"): schedule, layer-wise rates, AdamW."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import BertConfig, BertModel

from bamkd.optim import BertAdamW, layer_depth, layerwise_factor, lr_at, param_groups, set_lr

ALPHA = 0.9
NUM_LAYERS = 3

# --------------------------------------------------------------------------------------------
# lr_at
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, 0.0),  # warmup starts at 0
        (5, 0.5),  # 5 / 10 of the 10 warmup steps
        (9, 0.9),  # last warmup step
        (10, 0.9),  # decay measured from step 0: 1 - 10 / 100
        (50, 0.5),  # 1 - 50 / 100
        (99, 0.01),  # 1 - 99 / 100
        (100, 0.0),
        (150, 0.0),  # never negative
    ],
)
def test_lr_schedule_by_hand(step: int, expected: float) -> None:
    assert lr_at(step, 100, 1.0, 0.1) == pytest.approx(expected, abs=1e-12)


def test_lr_schedule_scales_with_peak_and_handles_no_warmup() -> None:
    assert lr_at(5, 100, 1e-4, 0.1) == pytest.approx(0.5e-4)
    # No warmup: the first step already runs at the peak, decaying linearly after.
    assert lr_at(0, 100, 2.0, 0.0) == pytest.approx(2.0)
    assert lr_at(25, 100, 2.0, 0.0) == pytest.approx(1.5)


# --------------------------------------------------------------------------------------------
# layer_depth / param_groups on a real tiny BERT
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_bert() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=100,
    )
    return BertModel(config)


def _expected_depth(name: str) -> int:
    # BAM_SPEC.md: pooler x alpha, top layer (2) x alpha^2, layer 1 x alpha^3,
    # layer 0 x alpha^(L+1) = alpha^4, embeddings x alpha^(L+2) = alpha^5.
    if name.startswith("pooler."):
        return 1
    for layer, depth in (("encoder.layer.2.", 2), ("encoder.layer.1.", 3), ("encoder.layer.0.", 4)):
        if name.startswith(layer):
            return depth
    assert name.startswith("embeddings."), name
    return 5


@pytest.mark.parametrize(
    ("name", "depth"),
    [
        ("pooler.dense.weight", 1),
        ("encoder.layer.2.output.dense.weight", 2),
        ("encoder.layer.1.attention.self.query.bias", 3),
        ("encoder.layer.0.attention.output.LayerNorm.weight", 4),
        ("embeddings.word_embeddings.weight", 5),
        ("embeddings.LayerNorm.bias", 5),
    ],
)
def test_layer_depth_by_name(name: str, depth: int) -> None:
    assert layer_depth(name, NUM_LAYERS) == depth


def test_layer_depth_twelve_layers_double_digit_index() -> None:
    # L = 12: layer 11 is the top (depth 2), layer 10 depth 3, layer 0 depth 13, embeddings 14.
    assert layer_depth("encoder.layer.11.output.dense.weight", 12) == 2
    assert layer_depth("encoder.layer.10.output.dense.weight", 12) == 3
    assert layer_depth("encoder.layer.0.output.dense.weight", 12) == 13
    assert layer_depth("embeddings.position_embeddings.weight", 12) == 14


def test_layerwise_factor() -> None:
    assert layerwise_factor(0, ALPHA) == 1.0
    assert layerwise_factor(5, ALPHA) == pytest.approx(0.59049)  # 0.9^5


def test_param_groups_on_tiny_bert(tiny_bert: BertModel) -> None:
    head = torch.nn.Linear(32, 3)
    head_named = [(f"heads.mrpc.{n}", p) for n, p in head.named_parameters()]
    groups = param_groups(tiny_bert.named_parameters(), head_named, NUM_LAYERS, ALPHA, 0.01)

    group_of: dict[int, dict] = {}
    for group in groups:
        for p in group["params"]:
            assert id(p) not in group_of, "a parameter is in two groups"
            group_of[id(p)] = group

    named = list(tiny_bert.named_parameters()) + head_named
    assert len(group_of) == len(named)  # every trainable parameter in exactly one group
    hand_factors = {0: 1.0, 1: 0.9, 2: 0.81, 3: 0.729, 4: 0.6561, 5: 0.59049}
    seen_depths = set()
    for name, param in named:
        group = group_of[id(param)]
        depth = 0 if name.startswith("heads.") else _expected_depth(name)
        seen_depths.add(depth)
        assert group["depth"] == depth, name
        assert group["lr_scale"] == pytest.approx(hand_factors[depth], rel=1e-12), name
        no_decay = name.endswith(".bias") or "LayerNorm" in name
        assert group["weight_decay"] == (0.0 if no_decay else 0.01), name
    assert seen_depths == {0, 1, 2, 3, 4, 5}
    # Spot checks by name, so a wrong name-matching rule cannot hide behind _expected_depth.
    by_name = dict(named)
    assert group_of[id(by_name["embeddings.LayerNorm.weight"])]["weight_decay"] == 0.0
    assert group_of[id(by_name["embeddings.word_embeddings.weight"])]["weight_decay"] == 0.01
    assert group_of[id(by_name["encoder.layer.1.output.LayerNorm.weight"])]["weight_decay"] == 0.0
    assert group_of[id(by_name["heads.mrpc.weight"])]["weight_decay"] == 0.01
    assert group_of[id(by_name["heads.mrpc.bias"])]["weight_decay"] == 0.0


def test_param_groups_skip_frozen_parameters() -> None:
    frozen = torch.nn.Parameter(torch.zeros(2), requires_grad=False)
    live = torch.nn.Parameter(torch.zeros(2))
    groups = param_groups(
        [("embeddings.word_embeddings.weight", frozen), ("pooler.dense.weight", live)],
        [],
        2,
        ALPHA,
        0.01,
    )
    params = [p for g in groups for p in g["params"]]
    assert len(params) == 1 and params[0] is live


def test_head_weight_of_task_named_like_bias_gets_decay() -> None:
    weight = torch.nn.Parameter(torch.zeros(2, 2))
    groups = param_groups([], [("heads.media_bias.weight", weight)], 2, ALPHA, 0.01)
    assert groups[0]["weight_decay"] == 0.01


# --------------------------------------------------------------------------------------------
# BertAdamW
# --------------------------------------------------------------------------------------------


def test_bert_adamw_one_step_without_bias_correction_by_hand() -> None:
    # p = 1, g = 2, lr .1, wd .01, betas (.9, .999), eps 1e-6:
    # m = .1 * 2 = .2; v = .001 * 4 = .004; update = .2 / (sqrt(.004) + 1e-6) + .01 * 1
    # = 3.16222766 + .01; p_new = 1 - .1 * 3.17222766 = 0.68277723.
    p = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = BertAdamW(
        [p], lr=0.1, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01, bias_correction=False
    )
    p.grad = torch.tensor([2.0], dtype=torch.float64)
    opt.step()
    update = 0.2 / (math.sqrt(0.004) + 1e-6) + 0.01 * 1.0
    assert p.item() == pytest.approx(1.0 - 0.1 * update, rel=1e-12)
    assert p.item() == pytest.approx(0.68277723, abs=1e-8)
    state = opt.state[p]
    assert state["exp_avg"].item() == pytest.approx(0.2, rel=1e-12)
    assert state["exp_avg_sq"].item() == pytest.approx(0.004, rel=1e-12)


def test_bert_adamw_two_steps_without_bias_correction_by_hand() -> None:
    # Step 1 as above but wd 0: p1 = 1 - .1 * .2 / (sqrt(.004) + 1e-6).
    # Step 2, g = -1: m = .9 * .2 + .1 * (-1) = .08; v = .999 * .004 + .001 * 1 = .004996.
    p = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = BertAdamW([p], lr=0.1, eps=1e-6)
    p.grad = torch.tensor([2.0], dtype=torch.float64)
    opt.step()
    p.grad = torch.tensor([-1.0], dtype=torch.float64)
    opt.step()
    p1 = 1 - 0.1 * 0.2 / (math.sqrt(0.004) + 1e-6)
    p2 = p1 - 0.1 * 0.08 / (math.sqrt(0.004996) + 1e-6)
    assert p.item() == pytest.approx(p2, rel=1e-12)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_bert_adamw_with_bias_correction_matches_torch_adamw(weight_decay: float) -> None:
    # torch.optim.AdamW: denom = sqrt(v) / sqrt(1 - b2^t) + eps, step lr / (1 - b1^t); its
    # decoupled decay p *= 1 - lr * wd equals BertAdamW's + wd * p inside the update.
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(4, 3, generator=gen), torch.randn(5, generator=gen)]
    grads = [[torch.randn_like(t) for t in init] for _ in range(6)]
    ours = [torch.nn.Parameter(t.clone()) for t in init]
    ref = [torch.nn.Parameter(t.clone()) for t in init]
    opt = BertAdamW(
        ours, lr=0.01, betas=(0.9, 0.999), eps=1e-6, weight_decay=weight_decay, bias_correction=True
    )
    ref_opt = torch.optim.AdamW(
        ref, lr=0.01, betas=(0.9, 0.999), eps=1e-6, weight_decay=weight_decay
    )
    for step_grads in grads:
        for a, b, g in zip(ours, ref, step_grads, strict=True):
            a.grad, b.grad = g.clone(), g.clone()
        opt.step()
        ref_opt.step()
        for a, b in zip(ours, ref, strict=True):
            assert torch.allclose(a, b, atol=1e-6, rtol=0), (a - b).abs().max()
    # Sanity: the parameters really moved.
    assert not torch.allclose(ours[0], init[0])


def test_bert_adamw_without_bias_correction_differs_from_torch_adamw() -> None:
    # First step: torch's bias-corrected update is g / |g| = 1 per element (times lr), ours is
    # .1 * g / (sqrt(.001) |g|) = 3.162 times larger, so the two must disagree.
    p_ours = torch.nn.Parameter(torch.tensor([1.0]))
    p_ref = torch.nn.Parameter(torch.tensor([1.0]))
    opt = BertAdamW([p_ours], lr=0.01)
    ref_opt = torch.optim.AdamW([p_ref], lr=0.01, eps=1e-6, weight_decay=0.0)
    p_ours.grad, p_ref.grad = torch.tensor([0.5]), torch.tensor([0.5])
    opt.step()
    ref_opt.step()
    assert p_ref.item() == pytest.approx(1.0 - 0.01, abs=1e-6)
    assert p_ours.item() == pytest.approx(1.0 - 0.01 * math.sqrt(10), abs=1e-5)


def test_bert_adamw_bias_correction_uses_each_parameters_own_step() -> None:
    a0, b0 = torch.tensor([1.0, -2.0]), torch.tensor([0.5])
    ours = [torch.nn.Parameter(a0.clone()), torch.nn.Parameter(b0.clone())]
    ref = [torch.nn.Parameter(a0.clone()), torch.nn.Parameter(b0.clone())]
    opt = BertAdamW(ours, lr=0.01, eps=1e-6, bias_correction=True)
    ref_opt = torch.optim.AdamW(ref, lr=0.01, eps=1e-6, weight_decay=0.0)
    # Step 1: only the first parameter has a gradient; step 2: both.
    ours[0].grad, ref[0].grad = torch.tensor([0.3, 0.1]), torch.tensor([0.3, 0.1])
    opt.step()
    ref_opt.step()
    for a, b in zip(ours, ref, strict=True):
        a.grad, b.grad = torch.full_like(a, 0.2), torch.full_like(b, 0.2)
    opt.step()
    ref_opt.step()
    # Second parameter's first real step: bias-corrected Adam moves it by lr * sign(g) = .01.
    assert ref[1].item() == pytest.approx(0.5 - 0.01, abs=1e-6)
    assert ours[1].item() == pytest.approx(ref[1].item(), abs=1e-6)


def test_bert_adamw_skips_parameters_without_gradient() -> None:
    p = torch.nn.Parameter(torch.tensor([1.0]))
    q = torch.nn.Parameter(torch.tensor([2.0]))
    opt = BertAdamW([p, q], lr=0.1, weight_decay=0.01)
    p.grad = torch.tensor([1.0])
    opt.step()
    assert q.item() == 2.0 and q not in opt.state
    assert p.item() != 1.0


# --------------------------------------------------------------------------------------------
# set_lr
# --------------------------------------------------------------------------------------------


def test_set_lr_applies_lr_scale() -> None:
    a, b, c = (torch.nn.Parameter(torch.zeros(1)) for _ in range(3))
    opt = BertAdamW(
        [
            {"params": [a], "lr_scale": 1.0},
            {"params": [b], "lr_scale": 0.81},
            {"params": [c]},  # no lr_scale: factor 1
        ],
        lr=123.0,
    )
    set_lr(opt, 2e-4)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([2e-4, 1.62e-4, 2e-4], rel=1e-12)


@pytest.mark.parametrize("bias_correction", [False, True])
def test_fused_and_foreach_implementations_agree(bias_correction: bool) -> None:
    # The fused kernel is what training runs; the foreach formula is the readable reference.
    # Two groups with different rates and decay, and a parameter whose first gradient comes late
    # (its own step count must drive its bias correction in both).
    gen = torch.Generator().manual_seed(1)
    init = [torch.randn(6, 4, generator=gen), torch.randn(4, generator=gen), torch.randn(3, 2)]
    sides = {}
    for impl in ("fused", "foreach"):
        params = [torch.nn.Parameter(t.clone()) for t in init]
        groups = [
            {"params": params[:2], "lr": 0.02, "weight_decay": 0.01},
            {"params": params[2:], "lr": 0.005, "weight_decay": 0.0},
        ]
        opt = BertAdamW(groups, eps=1e-6, bias_correction=bias_correction, implementation=impl)
        step_gen = torch.Generator().manual_seed(2)
        for step in range(5):
            for i, p in enumerate(params):
                p.grad = None if (i == 2 and step < 2) else torch.randn(p.shape, generator=step_gen)
            opt.step()
        sides[impl] = (params, opt)
    for a, b in zip(sides["fused"][0], sides["foreach"][0], strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5), (a - b).abs().max()
    for a, b in zip(sides["fused"][0], init, strict=True):
        assert not torch.allclose(a, b)
    late = sides["fused"][0][2]
    assert sides["fused"][1].state[late]["step"].item() == 3.0


def test_fused_without_bias_correction_matches_the_hand_computed_step() -> None:
    # Same numbers as the float64 by-hand test, through the fused kernel in float32.
    p = torch.nn.Parameter(torch.tensor([1.0]))
    opt = BertAdamW([p], lr=0.1, eps=1e-6, weight_decay=0.01, implementation="fused")
    p.grad = torch.tensor([2.0])
    assert opt._can_fuse([p])
    opt.step()
    assert p.item() == pytest.approx(0.68277723, rel=1e-6)


def test_unknown_implementation_is_refused() -> None:
    with pytest.raises(ValueError, match="fused"):
        BertAdamW([torch.nn.Parameter(torch.ones(1))], implementation="magic")
