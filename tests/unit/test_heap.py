"""The glibc mmap threshold that keeps memory flat under changing batch shapes.

Tests bamkd.runtime.heap.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from bamkd.config import build_config
from bamkd.errors import ConfigError
from bamkd.runtime.heap import is_glibc, set_mmap_threshold

# Free one 8 MiB block, then ask for another: does the second come from its own mapping?
# Each setting runs in a fresh interpreter because mallopt changes the whole process.
PROBE = """
import ctypes, sys
from bamkd.runtime.heap import set_mmap_threshold

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "fixed":
    assert set_mmap_threshold(1)
size = 8 << 20
libc.free(libc.malloc(size))  # glibc's default raises its threshold past this size here
before = libc.mallinfo2().hblks
block = libc.malloc(size)
print(libc.mallinfo2().hblks - before)
libc.free(block)
"""


def _mapped_blocks(setting: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, setting], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


@pytest.mark.skipif(not is_glibc(), reason="the mmap threshold is a glibc setting")
def test_a_fixed_threshold_keeps_large_blocks_out_of_the_heap():
    assert _mapped_blocks("default") == 0  # reused from the heap, where holes build up
    assert _mapped_blocks("fixed") == 1  # its own mapping, returned to the system when freed


def test_zero_leaves_malloc_alone_and_out_of_range_is_refused():
    assert set_mmap_threshold(0) is False
    with pytest.raises(ValueError, match="0-32 MiB"):
        set_mmap_threshold(64)
    with pytest.raises(ConfigError, match="train.malloc_mmap_threshold_mib=33"):
        build_config("tiny", ["data.tasks=[rte]", "train.malloc_mmap_threshold_mib=33"])
