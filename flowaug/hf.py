"""The public path of the Hugging Face ``datasets`` hook: ``flowaug.hf.augment_dataset`` and the
rest of :mod:`flowaug.integrations.hf`, where the code lives.

This module is permanent, not a shim: ``flowaug.hf`` is the name users, the README and the
recipes import.
"""

from flowaug.integrations.hf import (
    SYNTHETIC_COLUMN,
    SyntheticTransform,
    augment_dataset,
    interleave_synthetic,
    load_synthetic_shards,
    progress_bars,
    synthetic_iterable_dataset,
    synthetic_transform,
    write_synthetic_shards,
)

__all__ = [
    "SYNTHETIC_COLUMN",
    "SyntheticTransform",
    "augment_dataset",
    "interleave_synthetic",
    "load_synthetic_shards",
    "progress_bars",
    "synthetic_iterable_dataset",
    "synthetic_transform",
    "write_synthetic_shards",
]
