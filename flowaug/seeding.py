"""Every seed flowaug derives: a pure function of ``(seed, *keys)``, so a resumed, re-run or
multi-process job draws exactly what an uninterrupted one does, and ``f(0, 1) != f(1, 0)``.

Two bit layouts exist and both are kept so that no published stream (benchmarks, saved banks,
shards) moves: :func:`derive_seed` for sampling streams (synthetic rows, banks, shards,
FlowAugment), :func:`stream_seed` / :func:`generator` for the training streams (batch order,
dequantization noise, dropout), whose keys may be names.
"""

from __future__ import annotations

import os
import random
import weakref
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

__all__ = ["WorkerRandomState", "derive_seed", "generator", "stream_seed"]


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers ``(seed, index, epoch, ...)``; the sampling streams' seeds."""
    state = np.random.SeedSequence([int(p) % (2**63) for p in parts]).generate_state(2, np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def stream_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed from ``(seed, *keys)``, strings by their first 8 bytes; the training
    streams' seeds."""
    words = [int(seed)] + [
        k if isinstance(k, int) else int.from_bytes(k.encode()[:8].ljust(8, b"\0"), "little")
        for k in keys
    ]
    return int(np.random.SeedSequence(words).generate_state(2, np.uint64)[0] >> np.uint64(1))


def generator(seed: int, *keys: int | str) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`stream_seed` ``(seed, *keys)``."""
    return torch.Generator().manual_seed(stream_seed(seed, *keys))


_RANDOM_STATES: weakref.WeakSet[WorkerRandomState] = weakref.WeakSet()


def _reseed_after_fork() -> None:
    for state in list(_RANDOM_STATES):
        state.reset()


os.register_at_fork(after_in_child=_reseed_after_fork)


class WorkerRandomState:
    """Random streams owned by one process: Python's ``random`` for per-sample scalars (cheap),
    a ``torch.Generator`` for tensors.

    Seeded on first use in every process (a forked child starts over, an unpickled copy too):
    from ``seed``, mixed with the DataLoader worker's seed inside a worker so that workers and
    epochs differ; or, with ``seed=None``, from torch's global RNG, which DataLoader seeds per
    worker. A ``copy.deepcopy`` continues the stream where it stands.
    """

    def __init__(self, seed: int | None):
        self.seed = seed
        self.reset()
        _RANDOM_STATES.add(self)

    def reset(self) -> None:
        self._python: random.Random | None = None
        self._torch: torch.Generator | None = None

    def _start(self) -> None:
        info = get_worker_info()
        if self.seed is None:
            seed = int(torch.randint(0, 2**62, (1,)))
        elif info is None:
            seed = derive_seed(self.seed)
        else:
            seed = derive_seed(self.seed, info.seed)
        self._python = random.Random(seed)
        self._torch = torch.Generator().manual_seed(seed)

    @property
    def python(self) -> random.Random:
        if self._python is None:
            self._start()
        return self._python  # type: ignore[return-value]

    @property
    def torch(self) -> torch.Generator:
        if self._torch is None:
            self._start()
        return self._torch  # type: ignore[return-value]

    def __getstate__(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["seed"])

    def __deepcopy__(self, memo: dict[int, Any]) -> WorkerRandomState:
        # pickling starts over (a worker seeds its own stream); a copy in this process continues
        copy = WorkerRandomState(self.seed)
        if self._python is not None and self._torch is not None:
            copy._python = random.Random()
            copy._python.setstate(self._python.getstate())
            copy._torch = torch.Generator().set_state(self._torch.get_state())
        return copy
