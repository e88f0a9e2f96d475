"""Dropout whose masks cost half as much on CPUs, for training on the hardware at hand.

PyTorch's CPU dropout draws one Mersenne Twister number per element through ``bernoulli_``;
only Intel CPUs get MKL's vectorised generator. Profiling MiniLM training (bf16, 2 AMD cores,
``benchmarks/mfu.py --profile``) put ``bernoulli_`` at 21% of the step, more than any kernel but
matrix multiplication. Here a mask comes from ``torch.randint`` over int64, which yields two
32-bit draws per call, and each draw is compared with p * 2^32: the same generator (so the same
seeding, and the RNG state that checkpoints save), a drop probability exact to 2^-32, and a
boolean mask applied and differentiated by ATen's own dropout kernels.

``install_fast_dropout`` swaps every ``nn.Dropout`` of a model for ``FastDropout`` and, for
encoders that call attention through transformers' ``AttentionInterface`` (BERT, RoBERTa,
ELECTRA, ... in transformers 5), routes training-time attention through the same masks. Without
dropout (evaluation) attention stays on PyTorch's fused SDPA kernel. On GPUs PyTorch's own dropout
is already fast; bamkd installs this on CPU runs only.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

log = logging.getLogger(__name__)

ATTENTION_NAME = "bamkd_fast_dropout"
"""Name under which the attention function (and its mask builder) is registered."""

_INT32_MIN = -(2**31)


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device) -> torch.Tensor:
    """Boolean mask, True with probability 1 - p (to within 2^-32), from the global generator."""
    if p >= 1.0:  # the threshold 2^31 would not fit the int32 comparison
        return torch.zeros(shape, dtype=torch.bool, device=device)
    numel = math.prod(shape)
    draws = torch.randint(
        -(2**63), 2**63 - 1, ((numel + 1) // 2,), dtype=torch.int64, device=device
    )
    uniform = draws.view(torch.int32)[:numel]  # each int32 uniform on [-2^31, 2^31)
    threshold = _INT32_MIN + int(round(p * 2**32))
    return (uniform >= threshold).view(shape)


class _MaskedScale(torch.autograd.Function):
    """x * mask / (1 - p), with the boolean mask saved for the backward pass (as ATen does)."""

    # torch types Function.forward/backward as (ctx, *args, **kwargs); naming the arguments, as
    # torch's own examples do, narrows that signature, hence the override ignores.
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:  # type: ignore[override]
        mask = keep_mask(x.shape, p, x.device)
        scale = 1.0 / (1.0 - p)
        ctx.save_for_backward(mask)
        ctx.scale = scale
        return torch.ops.aten.native_dropout_backward(x, mask, scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        return torch.ops.aten.native_dropout_backward(grad, mask, ctx.scale), None


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Drop-in for ``F.dropout`` (not in place)."""
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return torch.zeros_like(x)
    return _MaskedScale.apply(x, p)


class FastDropout(nn.Dropout):
    """``nn.Dropout`` with masks from :func:`keep_mask`; keeps ``p`` for code that reads it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' attention signature: eager math with fast dropout while training."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if dropout == 0.0:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=0.0, **kwargs
        )
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:  # True = attend (sdpa_mask's convention)
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    weights = fast_dropout(torch.softmax(scores, dim=-1), dropout)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, _attention)
    # Same masks as "sdpa" (boolean, or None when nothing is padded); without a registered mask
    # builder transformers would pass no mask at all to a custom attention function.
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)


def install_fast_dropout(model: nn.Module) -> int:
    """Swap the model's dropout for :class:`FastDropout`; returns how many modules changed.

    Attention dropout is rerouted only in transformers models whose current attention is
    ``sdpa`` or ``eager`` (the ones that read ``config._attn_implementation``); others keep
    theirs.
    """
    swapped = 0
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                replacement = FastDropout(child.p, inplace=False)
                replacement.train(child.training)
                setattr(parent, name, replacement)
                swapped += 1
    for sub in model.modules():
        config = getattr(sub, "config", None)
        set_attention = getattr(sub, "set_attn_implementation", None)
        if getattr(config, "_attn_implementation", None) in ("sdpa", "eager") and set_attention:
            _register_attention()
            set_attention(ATTENTION_NAME)
            log.debug("attention of %s routed through %s", type(sub).__name__, ATTENTION_NAME)
    return swapped
