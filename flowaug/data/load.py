"""The entry points: :func:`as_flow_data` for data in memory, :func:`load_data` for a ``--data``."""

import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowaug.data.flowdata import FlowData
from flowaug.data.folders import check_image_size, load_image_folder, resize_images
from flowaug.data.hf_datasets import from_hf_dataset, is_saved_dataset, load_split, to_hf_dataset
from flowaug.data.sklearn import SKLEARN_DATASETS, load_sklearn
from flowaug.data.tensors import array_to_tensor, from_tensors, from_torch_dataset, to_labels

__all__ = ["as_flow_data", "load_data", "load_hf_dataset"]


def as_flow_data(
    data: Any,
    y: Any = None,
    *,
    levels: int | None = None,
    class_names: Sequence[str] | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    allow_unlabelled: bool = False,
) -> FlowData:
    """Turn user data into a :class:`FlowData`.

    Args:
        data: one of
            - a :class:`FlowData` (returned as is, ``levels`` / ``class_names`` overriding);
            - ``(x, y)`` tensors or arrays (or ``x`` alone, labels in ``y``): ``x`` images
              ``[N, C, H, W]`` / ``[N, H, W]`` (numpy ``[N, H, W, C]`` too) or features
              ``[N, F]``, ``y`` ``[N]`` integer or string labels;
            - a torch ``Dataset`` of ``(image, label)`` with PIL / tensor / array images
              (``dataset.classes`` gives the class names, as in torchvision);
            - a ``datasets.Dataset`` with an image column (``Image`` feature or arrays) or
              numeric feature columns, and a label column (``ClassLabel`` names the classes).
        y: labels when ``data`` is ``x`` alone.
        levels: intensity levels of integer images. Default: 256 for ``uint8`` (or values above
            127); other integer images must say (e.g. 17 for scikit-learn digits).
        class_names: names of the classes, in label order.
        image_column, label_column: column names for a ``datasets.Dataset`` (default: found by
            feature type, then by usual names).
        allow_unlabelled: keep rows labelled ``-1`` (scikit-learn's ``sklearn.semi_supervised``
            convention; also ``(image, None)`` items) as unlabelled, with label ``-1`` in ``y``
            (``FlowData.labelled()`` / ``.unlabelled()`` separate them). Off by default, where
            every row needs a class; when no row has a label, ``y`` is ``None``.

    Returns:
        :class:`FlowData`: integer images stay integer (``uint8`` / ``int64``), float images on a
        ``k / (levels - 1)`` grid (as ``ToTensor`` gives) become integers, features float32.
    """
    if isinstance(data, FlowData):
        return _reuse(data, levels, class_names, allow_unlabelled)
    if isinstance(data, (tuple, list)) and len(data) == 2 and y is None:
        if isinstance(data[0], (Tensor, np.ndarray)):  # [x, y] as well as (x, y)
            data, y = data
    if isinstance(data, (Tensor, np.ndarray)):
        x = data if isinstance(data, Tensor) else array_to_tensor(data)
        return from_tensors(x.detach().cpu(), y, levels, class_names, "x", allow_unlabelled)
    datasets = sys.modules.get("datasets")  # imported wherever a datasets.Dataset exists
    if datasets is not None and isinstance(data, datasets.Dataset):
        out = from_hf_dataset(data, levels, image_column, label_column, allow_unlabelled)
    elif isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__"):
        out = from_torch_dataset(data, levels, allow_unlabelled)
    else:
        raise _unsupported(data, datasets)
    return replace(out, class_names=list(class_names)) if class_names else out


def _reuse(
    data: FlowData, levels: int | None, class_names: Sequence[str] | None, allow_unlabelled: bool
) -> FlowData:
    """``as_flow_data`` on a FlowData: re-read on other ``levels``, checked for ``-1`` labels."""
    if levels is not None and data.is_discrete and data.levels != levels:
        data = from_tensors(data.x, data.y, levels, data.class_names, "data", allow_unlabelled)
    if not allow_unlabelled and data.y is not None and bool((data.y < 0).any()):
        to_labels(data.y, len(data), None)  # the error for -1 labels
    return data if class_names is None else replace(data, class_names=list(map(str, class_names)))


def _unsupported(data: Any, datasets: Any) -> TypeError:
    if datasets is not None and isinstance(data, (datasets.DatasetDict, datasets.IterableDataset)):
        return TypeError(
            f"data is a {type(data).__name__}; pass one split as a datasets.Dataset "
            "(e.g. ds['train'])."
        )
    if hasattr(data, "columns") and hasattr(data, "to_numpy"):  # a pandas DataFrame
        return TypeError(
            "data is a DataFrame: tables train through their column encoders, with "
            "flowaug.fit(df, label=...) or TabularFlow.from_frame(df, label=...) and "
            "model.encode_frame(df) before FlowTrainer.fit."
        )
    return TypeError(
        f"data must be (x, y) tensors/arrays, a torch Dataset of (image, label) or a "
        f"datasets.Dataset, got {type(data).__name__}."
    )


def load_data(
    spec: str | os.PathLike,
    levels: int | None = None,
    option: str = "--data",
    allow_unlabelled: bool = False,
    image_size: int | None = None,
) -> FlowData:
    """Load the data a CLI ``--data`` argument names.

    Args:
        spec: ``"sklearn:<name>"`` (see :func:`load_sklearn`), a directory written by
            ``datasets.Dataset.save_to_disk`` (``DatasetDict``: its ``train`` split), or an image
            folder ``root/<class>/<image>``. Nothing is downloaded.
        levels: intensity levels for integer data that does not imply them.
        option: the command-line option that named ``spec``, for error messages.
        allow_unlabelled: keep label ``-1`` rows of a saved dataset as unlabelled (see
            :func:`as_flow_data`); an image folder without class sub-folders is unlabelled.
        image_size: resize images to ``image_size x image_size`` (``--image-size``).
    """
    text, path = str(spec), Path(str(spec))
    if image_size is not None:
        check_image_size(image_size)
        if path.is_dir() and not is_saved_dataset(path):
            return load_image_folder(path, levels, size=image_size)
        return resize_images(load_data(spec, levels, option, allow_unlabelled), image_size)
    if text.startswith("sklearn:"):
        data = load_sklearn(text.split(":", 1)[1])
        if levels is not None and levels != data.levels:
            raise ValueError(
                f"{option} {text!r} comes with its own levels ({data.levels}); levels={levels} "
                "applies to image folders and saved datasets only: leave it unset."
            )
        return data
    if not path.exists():
        raise FileNotFoundError(
            f"{option} {text!r}: no such file or directory; use sklearn:<name> "
            f"({', '.join(SKLEARN_DATASETS)}), a saved datasets directory or an image folder."
        )
    if not path.is_dir():
        raise ValueError(f"{option} {text!r} must be a directory (saved dataset or image folder).")
    if is_saved_dataset(path):
        return as_flow_data(load_split(path), levels=levels, allow_unlabelled=allow_unlabelled)
    return load_image_folder(path, levels)


def load_hf_dataset(spec: str | os.PathLike, option: str = "--data"):
    """The data a CLI ``--data`` argument names, as a ``datasets.Dataset``.

    A ``save_to_disk`` directory is read with ``datasets.load_from_disk`` as it is (a
    ``DatasetDict``: its ``train`` split, or its only split); ``sklearn:<name>`` and image
    folders are read with :func:`load_data` and converted with :func:`to_hf_dataset`.
    """
    if str(spec).startswith("sklearn:") or not is_saved_dataset(Path(str(spec))):
        return to_hf_dataset(load_data(spec, option=option))  # errors name the option
    return load_split(Path(str(spec)))
