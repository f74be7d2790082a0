"""Hugging Face ``datasets`` hook: synthetic rows added on disk (:func:`augment_dataset`), on the
fly (:func:`synthetic_transform`), as a stream (:func:`interleave_synthetic`), as Parquet shards
written by every process of a launch (:func:`write_synthetic_shards`), or as PNG files in class
folders (:func:`write_image_folder`).

Images follow torchvision's conventions: ``Image`` columns hold 8-bit PIL images, uint8 arrays
hold ``0..255``, float arrays hold ``[0, 1]``. Tabular datasets work when the model has a
``sample_frame`` method (:class:`flowaug.TabularFlow`). ``columns`` holds the column checks and
the :class:`ImageCodec`, ``rows`` the one :class:`RowGenerator` that every path writes from.
"""

from flowaug.integrations.hf.columns import SYNTHETIC_COLUMN, ImageCodec, progress_bars
from flowaug.integrations.hf.dataset import augment_dataset
from flowaug.integrations.hf.imagefolder import ClassFiles, class_folder_names, write_image_folder
from flowaug.integrations.hf.rows import RowGenerator
from flowaug.integrations.hf.shards import (
    load_synthetic_shards,
    plan_shards,
    write_synthetic_shards,
)
from flowaug.integrations.hf.stream import interleave_synthetic, synthetic_iterable_dataset
from flowaug.integrations.hf.transform import SyntheticTransform, synthetic_transform

__all__ = [
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
