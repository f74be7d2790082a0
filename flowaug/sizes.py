"""Up-front size checks of sampling requests: an absurd count is refused with an estimate.

A request such as ``model.sample(0, num_samples=10**12)`` or ``sample_frame(10**11)`` would
otherwise run until the allocator fails (a raw error, or the machine swapping); here it is
refused before anything is allocated, naming the argument, the count and the bytes it needs.
The estimates are lower bounds (the output and the noise it is decoded from), so a request that
is refused can never have fitted.

Example:
    >>> check_count_in_memory(10**12, 4096, "num_samples", "draw fewer.")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: num_samples=1000000000000 (4.0 KiB per sample) needs about 3.6 PiB, ...
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

__all__ = [
    "check_count_in_memory",
    "check_fits_in_memory",
    "format_bytes",
    "memory_limit_bytes",
    "check_count_on_disk",
    "flow_sample_bytes",
]

#: values a sample occupies while it is drawn at once: the noise, the sample and two
#: intermediates of the same size (a coupling layer's halves and its output)
_COPIES_WHILE_SAMPLING = 4


def memory_limit_bytes() -> int | None:
    """The machine's physical memory in bytes, or ``None`` where it cannot be read."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def format_bytes(n: float) -> str:
    """``n`` bytes in readable units (``"1.5 GiB"``)."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_fits_in_memory(estimate: int, what: str, fix: str) -> None:
    """Refuse ``what`` when ``estimate`` bytes exceed the machine's physical memory.

    Raises:
        ValueError: naming ``what``, the estimate, the memory and ``fix``.
    """
    limit = memory_limit_bytes()
    if limit is not None and estimate > limit:
        raise ValueError(
            f"{what} needs about {format_bytes(estimate)}, more than this machine's "
            f"{format_bytes(limit)} of memory; {fix}"
        )


def flow_sample_bytes(model: Any) -> int:
    """Bytes one sample of ``model`` needs while a batch is drawn at once (a lower bound)."""
    numel = math.prod(int(s) for s in model.event_shape)
    param = next(model.parameters(), None)
    element = 4 if param is None else param.element_size()
    return max(1, numel * element * _COPIES_WHILE_SAMPLING)


def _request(count: int, per_sample: int, argument: str, shown: Any) -> str:
    value = count if shown is None else shown
    total = "" if shown is None else f"{count} samples, "
    return f"{argument}={value!r} ({total}{format_bytes(per_sample)} per sample)"


def check_count_in_memory(
    count: int, per_sample: int, argument: str, fix: str, shown: Any = None
) -> None:
    """Refuse ``count`` samples of ``per_sample`` bytes each when they exceed the memory.

    ``shown`` is the argument's value as the caller received it, when it is not ``count``
    itself (per-class counts, for instance).

    Raises:
        ValueError: naming ``argument``, the count, the estimate, the memory and ``fix``.
    """
    request = _request(count, per_sample, argument, shown)
    check_fits_in_memory(int(count) * int(per_sample), request, fix)


def check_count_on_disk(
    count: int, per_sample: int, folder: str | Path, argument: str, fix: str, shown: Any = None
) -> None:
    """Refuse ``count`` rows of about ``per_sample`` bytes each when ``folder``'s file system
    (its nearest existing parent) has less free space than they need.

    Raises:
        ValueError: naming ``argument``, the count, the estimate, the free space and ``fix``.
    """
    estimate = int(count) * int(per_sample)
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if estimate > free:
        raise ValueError(
            f"{_request(count, per_sample, argument, shown)} needs about "
            f"{format_bytes(estimate)} of disk, more than the {format_bytes(free)} free under "
            f"{folder}; {fix}"
        )
