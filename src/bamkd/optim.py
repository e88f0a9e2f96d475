"""BERT-style optimisation: layer-wise learning rates, AdamW without bias correction, schedule.

BAM_SPEC.md, "Optimisation": rate = base * alpha^(depth from the top) with heads x1, pooler x alpha,
top layer x alpha^2, ..., layer 0 x alpha^(L+1), embeddings x alpha^(L+2); no weight decay on
LayerNorm and bias; warmup over 10% then linear decay to 0 measured from step 0.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

import torch

log = logging.getLogger(__name__)

_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|block|blocks|h)\.(\d+)\.")


def lr_at(step: int, total_steps: int, peak: float, warmup_fraction: float) -> float:
    """Learning rate for optimiser step ``step`` (0-based), BERT's schedule.

    Warmup: peak * step / warmup_steps. After warmup: peak * (1 - step / total_steps), so the rate
    is 0.9 * peak right after a 10% warmup (decay is measured from step 0, as in BERT).
    """
    warmup = int(round(total_steps * warmup_fraction, 6))  # BERT truncates; skip float noise
    if step < warmup:
        return peak * step / warmup
    return peak * max(0.0, 1.0 - step / total_steps)


def layer_depth(name: str, num_layers: int) -> int:
    """Depth from the top of an encoder parameter: pooler 1, top layer 2, ..., embeddings L+2.

    Heads (depth 0) are not encoder parameters and never reach this function.
    """
    if name.startswith("pooler.") or ".pooler." in name:
        return 1
    match = _LAYER.search(name)
    if match:
        return num_layers - int(match.group(1)) + 1
    # Embeddings, and any parameter below the first layer (relative position tables, ...).
    return num_layers + 2


def layerwise_factor(depth: int, alpha: float) -> float:
    return alpha**depth


def param_groups(
    encoder_params: Iterable[tuple[str, torch.nn.Parameter]],
    head_params: Iterable[tuple[str, torch.nn.Parameter]],
    num_layers: int,
    alpha: float,
    weight_decay: float,
) -> list[dict]:
    """Parameter groups with ``lr_scale`` (layer-wise factor) and weight decay set."""
    buckets: dict[tuple[int, bool], list[torch.nn.Parameter]] = {}
    named = [(n, p, layer_depth(n, num_layers)) for n, p in encoder_params]
    named += [(n, p, 0) for n, p in head_params]
    for _name, param, depth in named:
        if not param.requires_grad:
            continue
        # LayerNorm weights and biases are exactly the 1-D parameters of a BERT-like encoder;
        # matching names instead would misfire on a task called e.g. "media_bias".
        decay = param.ndim >= 2
        buckets.setdefault((depth, decay), []).append(param)
    groups = []
    for (depth, decay), params in sorted(buckets.items()):
        groups.append(
            {
                "params": params,
                "weight_decay": weight_decay if decay else 0.0,
                "lr_scale": layerwise_factor(depth, alpha),
                "depth": depth,
            }
        )
    return groups


class BertAdamW(torch.optim.Optimizer):
    """AdamW as in the original BERT: optional bias correction, decoupled weight decay.

    update = m / (sqrt(v) + eps) + weight_decay * param;  param -= lr * update.
    torch.optim.AdamW always bias-corrects, which the paper's optimiser does not.

    The update is memory-bound: a MiniLM step touches three 23M-element buffers per parameter.
    The default ``implementation="fused"`` runs torch's fused AdamW kernel (one pass over memory
    per tensor instead of about ten ``_foreach`` passes); BERT's missing bias correction is had by
    handing the kernel a step count so large that 1 - beta**step is exactly 1. ``"foreach"`` is
    the plain formula, used where the kernel is unavailable (and kept as the tests' reference).
    """

    NO_CORRECTION_STEP = float(2**30)
    """beta1**step and beta2**step underflow to 0 in double precision: no bias correction."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        bias_correction: bool = False,
        implementation: str = "fused",
    ) -> None:
        if implementation not in ("fused", "foreach"):
            raise ValueError(f"implementation must be 'fused' or 'foreach', not {implementation!r}")
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, bias_correction=bias_correction
        )
        super().__init__(params, defaults)
        self.implementation = implementation
        self._constant_steps: dict[torch.device, torch.Tensor] = {}

    def _states(self, params: list[torch.Tensor]) -> tuple[list, list, list]:
        steps, exp_avg, exp_avg_sq = [], [], []
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            steps.append(state["step"])
            exp_avg.append(state["exp_avg"])
            exp_avg_sq.append(state["exp_avg_sq"])
        return steps, exp_avg, exp_avg_sq

    def _can_fuse(self, params: list[torch.Tensor]) -> bool:
        return (
            self.implementation == "fused"
            and hasattr(torch, "_fused_adamw_")
            and all(
                p.device.type in ("cpu", "cuda")
                and p.dtype in (torch.float32, torch.bfloat16, torch.float16)
                and p.grad is not None  # always, as step passes only parameters with grads
                and not p.grad.is_sparse
                for p in params
            )
            and len({p.device for p in params}) == 1
        )

    @torch.no_grad()
    # torch types step as two overloads (closure or none); one body serving both, as torch's own
    # optimizers have, cannot match them for mypy.
    def step(self, closure=None):  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            steps, exp_avg, exp_avg_sq = self._states(params)
            if self._can_fuse(params):
                self._fused_step(group, params, grads, steps, exp_avg, exp_avg_sq)
            else:
                self._foreach_step(group, params, grads, steps, exp_avg, exp_avg_sq)
        return loss

    def _fused_step(self, group, params, grads, steps, exp_avg, exp_avg_sq) -> None:
        device = params[0].device
        if group["bias_correction"]:
            # The kernel wants the step counts on the parameters' device (a CUDA run's state
            # may have been loaded with its counts on the CPU).
            kernel_steps = []
            for p, step in zip(params, steps):
                if step.device != device:
                    self.state[p]["step"] = step = step.to(device)
                kernel_steps.append(step)
        else:
            if device not in self._constant_steps:
                self._constant_steps[device] = torch.tensor(
                    self.NO_CORRECTION_STEP, dtype=torch.float32, device=device
                )
            kernel_steps = [self._constant_steps[device]] * len(params)
        beta1, beta2 = group["betas"]
        torch._fused_adamw_(
            params,
            grads,
            exp_avg,
            exp_avg_sq,
            [],
            kernel_steps,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            amsgrad=False,
            maximize=False,
        )

    def _foreach_step(self, group, params, grads, steps, exp_avg, exp_avg_sq) -> None:
        beta1, beta2 = group["betas"]
        torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(exp_avg_sq)
        if group["bias_correction"]:
            # Each parameter's own step: one that got its first gradient late is corrected
            # for the updates it has actually had.
            counts = [float(t) for t in steps]
            torch._foreach_div_(denom, [(1 - beta2**t) ** 0.5 for t in counts])
        torch._foreach_add_(denom, group["eps"])
        updates = torch._foreach_div(exp_avg, denom)
        if group["bias_correction"]:
            torch._foreach_div_(updates, [1 - beta1**t for t in counts])
        if group["weight_decay"]:
            torch._foreach_add_(updates, params, alpha=group["weight_decay"])
        torch._foreach_add_(params, updates, alpha=-group["lr"])


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float) -> None:
    """Apply the scheduled base rate times each group's layer-wise factor."""
    for group in optimizer.param_groups:
        group["lr"] = base_lr * group.get("lr_scale", 1.0)
