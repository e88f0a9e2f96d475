"""Keep a CPU training process's memory from growing with every new batch shape.

Length-grouped batches change width every step, so activation buffers change size every step.
glibc's malloc raises its mmap threshold to the size of each large block freed, after which
blocks of that size come from the heap; freed there, they leave holes that the next batch's
differently sized buffers cannot reuse, and the resident set grows with each new width (RTE on
MiniLM: 2.3 GiB after the first 128-wide batch, 2.8 GiB after the second). A fixed threshold
gives every large buffer its own mapping, handed back to the system when freed.

It is a trade, so it is off unless asked for (``train.malloc_mmap_threshold_mib``): fresh mappings
are page-faulted in and zeroed on every step. ``benchmarks/allocator.py`` measured RTE training
on 2 cores at 0.61x the peak memory and 0.63x the speed (fp32), 0.71x and 0.55x (bf16). For a
machine where memory, not time, is what runs out. Other allocators preloaded with ``LD_PRELOAD``
(jemalloc, tcmalloc) are not touched: glibc's settings do not apply to them.
"""

from __future__ import annotations

import ctypes
import logging
import platform

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
"""``mallopt`` parameter number, from glibc's malloc.h."""
MAX_MMAP_THRESHOLD_MIB = 32
"""glibc refuses thresholds above 32 MiB on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX)."""


def is_glibc() -> bool:
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def set_mmap_threshold(mib: int) -> bool:
    """Serve every allocation of ``mib`` MiB or more by its own mapping (glibc only).

    Setting the threshold also stops glibc from raising it, which is the point. Returns whether
    the setting took effect: False for 0 (leave malloc alone) and on other C libraries.
    """
    if not 0 <= mib <= MAX_MMAP_THRESHOLD_MIB:
        raise ValueError(f"mmap threshold must be 0-{MAX_MMAP_THRESHOLD_MIB} MiB, got {mib}")
    if mib == 0 or not is_glibc():
        return False
    libc = ctypes.CDLL(None)  # the C library this process already uses
    done = bool(libc.mallopt(M_MMAP_THRESHOLD, mib << 20))
    if done:
        log.debug("glibc mmap threshold fixed at %d MiB", mib)
    return done
