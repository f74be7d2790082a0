"""``import flowaug`` keeps freed tensor memory in the process on glibc (a 4 MB tensor comes
from the heap, not a fresh mmap), unless the environment opts out."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

import flowaug.allocator as allocator

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# Counts glibc's mmapped blocks (mallinfo2().hblks) around a 4 MB tensor's allocation, in a
# fresh process where glibc's mmap threshold still has its default (128 KiB).
_PROBE = """
import ctypes, torch
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
import flowaug
before = libc.mallinfo2().hblks
block = torch.empty(2**20)  # 4 MiB
print(libc.mallinfo2().hblks - before)
"""


def _mmapped_blocks_of_a_4mb_tensor(**env: str) -> int:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    environ.pop("FLOWAUG_KEEP_FREED_MEMORY", None)
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], env={**environ, **env}, capture_output=True, text=True,
        check=True,
    )
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(not GLIBC, reason="mallopt and mallinfo2 are glibc's")
def test_import_flowaug_serves_megabyte_tensors_from_the_heap():
    assert _mmapped_blocks_of_a_4mb_tensor() == 0


@pytest.mark.skipif(not GLIBC, reason="mallopt and mallinfo2 are glibc's")
@pytest.mark.parametrize(
    "env",
    [
        {"FLOWAUG_KEEP_FREED_MEMORY": "0"},
        {"MALLOC_TRIM_THRESHOLD_": "1000000"},
        {"LD_PRELOAD": "/nonexistent/libjemalloc.so.2"},
    ],
    ids=["opt-out", "user-malloc-settings", "preloaded-allocator"],
)
def test_the_environment_can_keep_malloc_as_it_is(env):
    assert _mmapped_blocks_of_a_4mb_tensor(**env) == 1


@pytest.mark.parametrize("value", ["0", "false", "No"])
def test_keep_freed_memory_reports_an_opt_out(monkeypatch, value):
    monkeypatch.setenv("FLOWAUG_KEEP_FREED_MEMORY", value)
    assert allocator.keep_freed_memory() is False


def test_keep_freed_memory_sets_both_thresholds(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "_mallopt", lambda: lambda *args: calls.append(args) or 1)
    monkeypatch.setenv("FLOWAUG_KEEP_FREED_MEMORY", "0")
    assert allocator.keep_freed_memory(force=True) is True
    assert calls == [(-3, allocator.MMAP_THRESHOLD), (-1, allocator.TRIM_THRESHOLD)]


def test_keep_freed_memory_does_nothing_without_glibc(monkeypatch):
    monkeypatch.setattr(allocator, "_mallopt", lambda: None)
    assert allocator.keep_freed_memory(force=True) is False
