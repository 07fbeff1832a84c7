"""Keep freed memory in the process while a training runs, instead of glibc handing it back to the kernel.

A training step allocates and frees the same activations every step. glibc's malloc serves large blocks (over
its mmap threshold, at most 32 MiB) with fresh mmap'd pages and unmaps them on free, and trims the top of its
heap, so the next step faults every page in again, zero-filled: at imgsz 640, batch 16, scale n, 20k-120k page
faults per step after the warm-up (350k in the first), about 8% of the step on the 2-core development VM
(bench/README.md, "the step against the peer's, and page faults"). With mmap off (M_MMAP_MAX 0) every block
comes from the heap, and with a high trim threshold freed heap memory stays mapped: the steps then fault almost
never. The price is that the process keeps its peak footprint until the training ends (+14% peak RSS measured
at 640), so glibc's default values are set again and the heap trimmed afterwards (glibc then keeps its
thresholds fixed instead of adapting them, as after any mallopt call). glibc on Linux only; skipped when the
user tuned malloc through MALLOC_* variables, or set DOCTOR_KEEP_FREED_MEMORY=0.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
from collections.abc import Iterator

OPT_OUT = "DOCTOR_KEEP_FREED_MEMORY"
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536  # glibc's defaults
_KEPT_TRIM_THRESHOLD = 2**31 - 1  # the largest value mallopt takes (an int): free memory is never trimmed


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has mallopt and malloc_trim), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
        return libc
    except (OSError, AttributeError, ValueError):
        return None


def wanted() -> bool:
    """False where the user opted out or tuned glibc's malloc themselves."""
    if os.environ.get(OPT_OUT, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return not any(name.startswith("MALLOC_") for name in os.environ)


@contextlib.contextmanager
def freed_memory_kept() -> Iterator[bool]:
    """While inside, glibc serves allocations from its heap and keeps what is freed; yields whether it applied.

    Processes forked inside (DataLoader workers) inherit the setting."""
    libc = _glibc() if wanted() else None
    applied = libc is not None and libc.mallopt(_M_MMAP_MAX, 0) == 1 and \
        libc.mallopt(_M_TRIM_THRESHOLD, _KEPT_TRIM_THRESHOLD) == 1
    try:
        yield applied
    finally:
        if libc is not None:
            libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
            libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
            libc.malloc_trim(0)
