"""Keep freed tensor memory in the process (glibc): CPU passes stop paying page faults.

glibc's ``malloc`` serves every allocation above its mmap threshold (128 KiB at first, raised
dynamically up to 32 MiB) with a fresh ``mmap`` and hands it back to the kernel on ``free``, and
trims the heap whenever more than twice that is free at its top. A flow's activations are
megabytes (1,000 8x8 samples through 64 channels: 4 MB a tensor), allocated and freed hundreds
of times a pass, so every pass faults all of them back in, page by page, zeroed by the kernel:
on this project's benchmark machine that made drawing 1,000 8x8 samples 1.6-2.2x slower
(``benchmarks/allocator.py`` measures both settings in one run). PyTorch's CPU tuning guides
recommend jemalloc or tcmalloc through ``LD_PRELOAD`` for the same reason; this does the part
that matters here with glibc's own ``mallopt``, from inside the process.

:func:`keep_freed_memory` raises the mmap threshold to 32 MiB (glibc's largest) and the trim
threshold to 256 MiB: blocks up to 32 MiB come from the heap and go back to it, and up to
256 MiB of freed heap stay mapped for the next pass instead of returning to the kernel. The
cost is that a process holds up to that much memory it no longer uses. ``import flowaug`` calls
it once, unless the environment says otherwise:

- ``FLOWAUG_KEEP_FREED_MEMORY=0`` leaves ``malloc`` as it is;
- any ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or ``MALLOC_TOP_PAD_`` set by the
  user wins (nothing is changed), and so does a preloaded allocator (``LD_PRELOAD`` naming
  jemalloc, tcmalloc or mimalloc).

Elsewhere (macOS, Windows, musl) it does nothing and returns ``False``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["keep_freed_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

#: glibc's ``mallopt`` parameter numbers (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: bytes: allocations up to this size come from the heap (glibc refuses more than 32 MiB)
MMAP_THRESHOLD = 32 * 1024**2
#: bytes of free memory at the heap's top kept before it is returned to the kernel
TRIM_THRESHOLD = 256 * 1024**2
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


def _mallopt():
    """glibc's ``mallopt``, or ``None`` on another C library."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version"):  # glibc only (musl's mallopt is a stub)
        return None
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


def keep_freed_memory(force: bool = False) -> bool:
    """Make glibc keep freed blocks of up to :data:`MMAP_THRESHOLD` bytes in the process.

    Args:
        force: apply even where the environment opts out (``FLOWAUG_KEEP_FREED_MEMORY=0``,
            the user's own ``MALLOC_*`` settings, a preloaded allocator).

    Returns:
        whether ``malloc``'s settings were changed.
    """
    if not force:
        if os.environ.get("FLOWAUG_KEEP_FREED_MEMORY", "1").strip().lower() in ("0", "false", "no"):
            return False
        if any(name in os.environ for name in _USER_SETTINGS):
            return False
        if any(name in os.environ.get("LD_PRELOAD", "") for name in _OTHER_ALLOCATORS):
            return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
