"""Seeds derived from a run's seed and names: every random stream of training is a pure function
of ``(seed, *keys)``, so a resumed or multi-process run draws exactly what an uninterrupted one
does."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["derive_seed", "generator"]


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed that is a pure function of ``(seed, *keys)`` (strings by their first 8
    bytes)."""
    words = [int(seed)] + [
        k if isinstance(k, int) else int.from_bytes(k.encode()[:8].ljust(8, b"\0"), "little")
        for k in keys
    ]
    return int(np.random.SeedSequence(words).generate_state(2, np.uint64)[0] >> np.uint64(1))


def generator(seed: int, *keys: int | str) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed` ``(seed, *keys)``."""
    return torch.Generator().manual_seed(derive_seed(seed, *keys))
