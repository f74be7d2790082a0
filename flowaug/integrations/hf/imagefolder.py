"""An augmented ``datasets.Dataset`` written as PNG files in class folders, for tools that read
folders (torchvision ``ImageFolder``, :func:`flowaug.data.load_image_folder`, file browsers).

Layout: ``OUT/<class name>/real-<row>.png`` for the real rows (``<row>``: the row's index in
the dataset, so real files trace back to ``--data``) and
``OUT/<class name>/synthetic-<n>.png`` for the synthetic rows (``<n>``: its place among the
synthetic rows), zero-padded to at least 6 digits. Pixels are 8-bit, ``L`` for one channel and
``RGB`` for three, converted with :func:`flowaug.pixels.to_8bit` (integer images on ``levels``
intensities: ``round(k * 255 / (levels - 1))``, as :func:`flowaug.data.to_hf_dataset` does;
float images in ``[0, 1]``: ``round(x * 255)``). Only classes with rows get a folder
(``ImageFolder`` refuses an empty class folder).

``write_image_folder`` writes into an existing empty folder; ``flowaug augment --format
imagefolder`` gives it a staging folder and swaps it into place when complete
(:mod:`flowaug.io.folders`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from datasets import ClassLabel

from flowaug.integrations.hf.columns import PIL_MODES, ImageCodec
from flowaug.pixels import to_8bit

__all__ = ["ClassFiles", "class_folder_names", "write_image_folder", "REAL", "SYNTHETIC"]

#: File name prefixes of real and synthetic images.
REAL, SYNTHETIC = "real", "synthetic"


@dataclass(frozen=True)
class ClassFiles:
    """What :func:`write_image_folder` wrote for one class."""

    name: str
    real: int
    synthetic: int


def class_folder_names(names: Sequence[str]) -> list[str]:
    """``names`` checked as folder names: non-empty, no path separator, not hidden (folder
    readers skip names starting with ``.``) and distinct ignoring case (macOS and Windows file
    systems would merge them)."""
    seen: dict[str, str] = {}
    for name in names:
        if not name or name.startswith(".") or any(s in name for s in {"/", "\\", os.sep, "\0"}):
            raise ValueError(
                f"class name {name!r} cannot be a folder name (empty, hidden or holding a path "
                "separator); rename the class in the label column (a ClassLabel with other "
                "names) before writing an image folder."
            )
        key = name.casefold()
        if key in seen:
            raise ValueError(
                f"class names {seen[key]!r} and {name!r} differ only in case and would share "
                "one folder on case-insensitive file systems; rename one of them."
            )
        seen[key] = name
    return list(names)


def _folder_names(ds: Any, label_column: str, labels: np.ndarray) -> list[str]:
    """The class folders' names; every row's label must be one of their classes."""
    feature = ds.features[label_column]
    if isinstance(feature, ClassLabel):
        names = list(feature.names)
    elif labels.size and (labels.min() < 0 or not np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(
            f"label column {label_column!r} holds values other than class indices 0, 1, ... "
            f"(e.g. {labels.min()!r}); cast it to a datasets.ClassLabel first."
        )
    else:
        names = [str(c) for c in range(int(labels.max()) + 1 if labels.size else 0)]
    names = class_folder_names(names)
    outside = np.flatnonzero((labels < 0) | (labels >= len(names)))
    if outside.size:
        i = int(outside[0])
        raise ValueError(
            f"row {i} has label {labels[i]!r}, not one of the {len(names)} classes (-1: "
            f"unlabelled); every image in a folder needs a class: drop such rows first "
            "(ds.filter) or label them."
        )
    return names


def _column(ds: Any, column: str) -> np.ndarray:
    return np.asarray(ds.select_columns([column]).with_format("numpy")[column])


def write_image_folder(
    ds: Any,
    out: str | os.PathLike,
    image_shape: Sequence[int],
    image_column: str = "image",
    label_column: str = "label",
    synthetic_column: str = "is_synthetic",
    batch_size: int = 256,
) -> list[ClassFiles]:
    """Write every row of ``ds`` as ``out/<class name>/{real,synthetic}-<index>.png``.

    Args:
        ds: a ``datasets.Dataset`` with an image column (``Image``, or uint8 / float arrays as
            :func:`flowaug.hf.augment_dataset` reads them), a label column and a bool
            ``synthetic_column`` (rows without it count as real).
        out: an existing, empty folder.
        image_shape: ``(C, H, W)`` of the images (the model's); ``C`` is 1 or 3.
        image_column, label_column, synthetic_column: the columns.
        batch_size: rows decoded at a time.

    Returns:
        One :class:`ClassFiles` per class, in class-index order (``0`` files for classes
        without rows, which get no folder).
    """
    c, h, w = (int(s) for s in image_shape)
    if c not in PIL_MODES:
        raise ValueError(
            f"an image folder holds PNG images with 1 (L) or 3 (RGB) channels; these images "
            f"have {c}. Save them with --format dataset instead."
        )
    out, ds = Path(out), ds.with_format(None)
    if len(ds) == 0:
        raise ValueError("the dataset has no rows; there is nothing to write as an image folder.")
    labels = _column(ds, label_column)
    synthetic = np.zeros(len(ds), dtype=bool)
    if synthetic_column in ds.column_names:
        synthetic = _column(ds, synthetic_column).astype(bool)
    names = _folder_names(ds, label_column, labels)
    codec = ImageCodec.of(ds, image_column, (c, h, w))
    folders = [out / name for name in names]
    for k in np.unique(labels):
        folders[int(k)].mkdir()
    digits = max(6, len(str(len(ds))))
    order = np.cumsum(synthetic) - 1  # each synthetic row's place among the synthetic rows
    images = ds.select_columns([image_column])
    for start in range(0, len(ds), batch_size):
        x = torch.stack([codec.decode(v) for v in images[start : start + batch_size][image_column]])
        for i, arr in enumerate(to_8bit(x, None if x.is_floating_point() else 256), start=start):
            kind, number = (SYNTHETIC, int(order[i])) if synthetic[i] else (REAL, i)
            image = arr[0] if c == 1 else arr.transpose(1, 2, 0)
            path = folders[int(labels[i])] / f"{kind}-{number:0{digits}d}.png"
            PIL.Image.fromarray(np.ascontiguousarray(image)).save(path)  # uint8: L or RGB
    real = ~synthetic
    return [
        ClassFiles(name, int(((labels == k) & real).sum()), int(((labels == k) & synthetic).sum()))
        for k, name in enumerate(names)
    ]
