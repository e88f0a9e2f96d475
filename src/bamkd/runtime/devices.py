"""Which device to run on, and the Accelerator that manages it.

Without a GPU-like device, accelerate must be told ``cpu=True`` or it silently ignores a torchrun
process group and runs every process alone; with it, CPU processes join one gloo group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from accelerate import Accelerator


def has_accelerator_device() -> bool:
    """Whether a CUDA, XPU or MPS device exists."""
    if torch.cuda.is_available():
        return True
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        return True
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def make_accelerator(mixed_precision: str = "no", **kwargs: Any) -> Accelerator:
    """An ``accelerate.Accelerator`` that finds the process group on CPU-only machines too.

    Accelerate keeps its settings in a process-wide singleton and refuses a second Accelerator
    with another precision. One process of ``bamkd run`` trains many runs (teachers in fp32,
    students in bf16, say), so the precision part of that state is reset between runs; the
    process group (PartialState) is kept.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    state = AcceleratorState._shared_state
    if state and str(state.get("_mixed_precision", mixed_precision)) != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(cpu=not has_accelerator_device(), mixed_precision=mixed_precision, **kwargs)
