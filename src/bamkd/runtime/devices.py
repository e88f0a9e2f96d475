"""Which device to run on, and the Accelerator that manages it.

Without a GPU-like device, accelerate must be told ``cpu=True`` or it silently ignores a torchrun
process group and runs every process alone; with it, CPU processes join one gloo group.
bf16 is fast only where the hardware computes in it: on a CPU without AVX-512 BF16 or AMX,
PyTorch emulates bf16 matrix products hundreds of times slower than fp32 (BENCHMARKS.md, section
2), so ``auto`` precision takes bf16 only where it is native and a bf16 run on such a CPU is
warned about. Sharded training (FSDP, DeepSpeed, Megatron-LM) is refused: the main process saves
checkpoints and models from its own copy of the weights and optimiser state, which sharding would
split.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import torch

from bamkd.errors import BamkdError

if TYPE_CHECKING:
    from accelerate import Accelerator

log = logging.getLogger(__name__)


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

    refuse_sharded_launch()
    state = AcceleratorState._shared_state
    if state and str(state.get("_mixed_precision", mixed_precision)) != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(
        cpu=not has_accelerator_device(), mixed_precision=mixed_precision, **kwargs
    )
    refuse_sharding(str(accelerator.distributed_type.value))
    if accelerator.device.type == "cpu" and mixed_precision == "bf16":
        warn_if_bf16_is_emulated()
    return accelerator


def cpu_has_native_bf16() -> bool:
    """Whether this x86 CPU computes bf16 matrix products in hardware (AVX-512 BF16 or AMX).

    False where PyTorch has no probe for it (older releases, other architectures): oneDNN's own
    check also says yes on AVX-512 CPUs without BF16 instructions, where bf16 is converted, not
    native, so it cannot stand in.
    """
    cpu = torch.cpu
    checks = [
        getattr(cpu, "_is_avx512_bf16_supported", None),
        getattr(cpu, "_is_amx_tile_supported", None),
    ]
    return any(check() for check in checks if check is not None)


def cuda_has_native_bf16() -> bool:
    """Ampere (compute capability 8) and later, or ROCm; ``torch.cuda.is_bf16_supported()`` also
    says yes on older GPUs that only emulate bf16."""
    if torch.version.hip:
        return True
    major, _ = torch.cuda.get_device_capability()
    return major >= 8


def native_precision() -> str:
    """What ``mixed_precision: auto`` means here: bf16 where the device computes in it, else no."""
    if torch.cuda.is_available():
        return "bf16" if cuda_has_native_bf16() else "no"
    if has_accelerator_device():  # XPU, MPS: bf16 support varies by chip; fp32 is always right
        return "no"
    return "bf16" if cpu_has_native_bf16() else "no"


def resolve_precision(requested: str) -> str:
    """A concrete precision (``no``, ``bf16``, ``fp16``) for a configured one (or ``auto``)."""
    return native_precision() if requested == "auto" else requested


_warned_emulated_bf16 = False


def warn_if_bf16_is_emulated() -> None:
    """Say once per process that bf16 on this CPU is slow, and what to set instead."""
    global _warned_emulated_bf16
    if _warned_emulated_bf16 or cpu_has_native_bf16():
        return
    _warned_emulated_bf16 = True
    log.warning(
        "bf16 on this CPU is emulated (no AVX-512 BF16 or AMX): matrix products run far slower "
        "than in fp32 here. To train faster, set the run's mixed_precision to auto (bf16 only "
        "where it is native) or no: train.mixed_precision=auto, or base.train.mixed_precision="
        "auto for an experiment"
    )


SHARDED = ("FSDP", "DEEPSPEED", "MEGATRON_LM")


def refuse_sharded_launch() -> None:
    """Refuse a sharded launch from the variables ``accelerate launch`` sets, before accelerate
    builds anything (it would fail on a missing DeepSpeed package first)."""
    for kind in SHARDED:
        if os.environ.get(f"ACCELERATE_USE_{kind}", "false").lower() in ("true", "1"):
            refuse_sharding(kind)


def refuse_sharding(distributed_type: str) -> None:
    """Stop before training when accelerate is set up to shard the model."""
    if distributed_type in SHARDED:
        raise BamkdError(
            f"accelerate is set up for {distributed_type} (its config file or an "
            f"ACCELERATE_USE_* variable); bamkd trains with data parallelism only, every process "
            "holding the whole model: launch with distributed_type MULTI_GPU or MULTI_CPU "
            "(accelerate config) or with torchrun"
        )
