"""Which device to run on, and the Accelerator that manages it.

Without a GPU-like device, accelerate must be told ``cpu=True`` or it silently ignores a torchrun
process group and runs every process alone; with it, CPU processes join one gloo group.
Sharded training (FSDP, DeepSpeed, Megatron-LM) is refused: the main process saves checkpoints
and models from its own copy of the weights and optimiser state, which sharding would split.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from bamkd.errors import BamkdError

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
    accelerator = Accelerator(
        cpu=not has_accelerator_device(), mixed_precision=mixed_precision, **kwargs
    )
    refuse_sharding(str(accelerator.distributed_type.value))
    return accelerator


SHARDED = ("FSDP", "DEEPSPEED", "MEGATRON_LM")


def refuse_sharding(distributed_type: str) -> None:
    """Stop before any file is written when accelerate is set up to shard the model."""
    if distributed_type in SHARDED:
        raise BamkdError(
            f"accelerate is set up for {distributed_type} (its config file or an "
            f"ACCELERATE_USE_* variable); bamkd trains with data parallelism only, every process "
            "holding the whole model: launch with distributed_type MULTI_GPU or MULTI_CPU "
            "(accelerate config) or with torchrun"
        )
