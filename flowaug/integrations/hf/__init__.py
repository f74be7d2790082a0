"""Hugging Face ``datasets`` hook: add synthetic rows, on disk, on the fly or as a stream.

- :func:`augment_dataset`: the real rows plus synthetic rows in one ``datasets.Dataset`` with
  the same ``Features`` and an ``is_synthetic`` column; deterministic for a seed.
- :func:`synthetic_transform`: a function for ``Dataset.with_transform`` that replaces a
  fraction of every batch with synthetic samples of the same labels.
- :func:`synthetic_iterable_dataset` / :func:`interleave_synthetic`: an endless (or finite)
  ``IterableDataset`` of synthetic rows to interleave with streamed real data.
- :func:`write_synthetic_shards` / :func:`load_synthetic_shards`: sets too large for one
  process, written as Parquet shards by every process of a launch and read back as one
  ``datasets.Dataset``; :func:`write_image_folder`: PNG files in class folders.

Images follow torchvision's conventions: ``Image`` columns hold 8-bit PIL images, uint8 arrays
hold ``0..255``, float arrays hold ``[0, 1]``. Tabular datasets work when the model has a
``sample_frame`` method (:class:`flowaug.TabularFlow`).

Layout: ``features`` (column checks, the ``is_synthetic`` flag, fingerprints), ``codec`` (column
values <-> image tensors), ``rows`` (the one row generator), then one module per path:
``dataset`` (+ ``tabular``), ``transform``, ``stream``, ``shards``, ``imagefolder``.
"""

from flowaug.integrations.hf.columns import SYNTHETIC_COLUMN, ImageCodec, progress_bars
from flowaug.integrations.hf.dataset import augment_dataset
from flowaug.integrations.hf.imagefolder import (
    REAL,
    SYNTHETIC,
    ClassFiles,
    class_folder_names,
    write_image_folder,
)
from flowaug.integrations.hf.rows import RowGenerator
from flowaug.integrations.hf.shards import (
    MANIFEST,
    load_synthetic_shards,
    plan_shards,
    write_synthetic_shards,
)
from flowaug.integrations.hf.stream import interleave_synthetic, synthetic_iterable_dataset
from flowaug.integrations.hf.transform import SyntheticTransform, synthetic_transform

__all__ = [
    "MANIFEST",
    "REAL",
    "SYNTHETIC",
    "SYNTHETIC_COLUMN",
    "ClassFiles",
    "ImageCodec",
    "RowGenerator",
    "SyntheticTransform",
    "augment_dataset",
    "class_folder_names",
    "interleave_synthetic",
    "load_synthetic_shards",
    "plan_shards",
    "progress_bars",
    "synthetic_iterable_dataset",
    "synthetic_transform",
    "write_image_folder",
    "write_synthetic_shards",
]
