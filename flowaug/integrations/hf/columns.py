"""What every path of the datasets hook shares: column checks, the ``is_synthetic`` flag,
fingerprints, datasets' progress bars and :class:`ImageCodec`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import datasets
import numpy as np
import PIL.Image
import torch
from datasets import ClassLabel, Features, Value
from torch import Tensor

from flowaug.pixels import from_unit_float, pil_to_tensor, tensor_to_pil

__all__ = ["SYNTHETIC_COLUMN", "ImageCodec", "progress_bars"]

SYNTHETIC_COLUMN = "is_synthetic"
PIL_MODES = {1: "L", 3: "RGB"}  # channels -> PIL mode
_UINT8 = torch.empty(0, dtype=torch.uint8)


def check_dataset(ds: Any) -> datasets.Dataset:
    if isinstance(ds, datasets.DatasetDict):
        raise TypeError(
            f"ds is a DatasetDict with splits {list(ds)}; pass one split, e.g. ds['train']."
        )
    if isinstance(ds, datasets.IterableDataset):
        raise TypeError(
            "ds is an IterableDataset; use flowaug.hf.interleave_synthetic for streams, or "
            "load it without streaming=True."
        )
    if not isinstance(ds, datasets.Dataset):
        raise TypeError(f"ds must be a datasets.Dataset, got {type(ds).__name__}.")
    return ds


def check_column(features: Features, column: str, what: str) -> None:
    if column not in features:
        raise ValueError(
            f"{what}={column!r} is not a column of the dataset; its columns are {list(features)}."
        )


def check_columns(features: Features, image_column: str, label_column: str, classes: int) -> None:
    """Both columns exist, and the labels are a ``ClassLabel`` of ``classes`` or integers."""
    check_column(features, image_column, "image_column")
    check_column(features, label_column, "label_column")
    feature = features[label_column]
    if isinstance(feature, ClassLabel):
        if feature.num_classes != classes:
            raise ValueError(
                f"label column {label_column!r} has {feature.num_classes} classes "
                f"({feature.names[:5]}...) but the model has {classes}; fit the model on this "
                "dataset's labels."
            )
    elif not (isinstance(feature, Value) and "int" in feature.dtype):
        raise TypeError(
            f"label column {label_column!r} must be a ClassLabel or an integer Value, got "
            f"{feature}; encode it with ds.class_encode_column({label_column!r})."
        )


def check_ratio(ratio: Any, positive: bool) -> float:
    """Synthetic rows per real row: a number ``>= 0`` (``> 0`` if ``positive``)."""
    number = not isinstance(ratio, bool) and isinstance(ratio, (int, float))
    if not number or (ratio <= 0 if positive else ratio < 0):
        raise ValueError(
            f"ratio must be a number {'>' if positive else '>='} 0 (synthetic rows per real "
            f"row), got {ratio!r}."
        )
    return float(ratio)


def unflagged(features: Features) -> Features:
    return Features({k: v for k, v in features.items() if k != SYNTHETIC_COLUMN})


def flagged(features: Features) -> Features:
    return Features({**unflagged(features), SYNTHETIC_COLUMN: Value("bool")})


def no_rows(features: Features) -> datasets.Dataset:
    return datasets.Dataset.from_dict({name: [] for name in features}, features=features)


def model_digest(model: torch.nn.Module) -> str:
    """SHA-256 of the model's class, config and weights (cheap next to hashing by pickling)."""
    h = hashlib.sha256(type(model).__qualname__.encode())
    h.update(repr(sorted(getattr(model, "config", {}).items())).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def fingerprint(*parts: Any) -> str:
    return datasets.fingerprint.Hasher.hash([repr(p) for p in parts])


@contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """datasets' progress bars off inside the block unless ``enabled`` (restored after)."""
    was_enabled = datasets.is_progress_bar_enabled()
    if not enabled:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled and not enabled:
            datasets.enable_progress_bars()


def _pil_mode(feature: datasets.Image, example: Any, image_shape: tuple, column: str) -> str:
    c, h, w = image_shape
    mode = feature.mode or (example.mode if isinstance(example, PIL.Image.Image) else None)
    mode = mode or PIL_MODES.get(c)
    if mode not in PIL_MODES.values() or {"L": 1, "RGB": 3}[mode] != c:
        raise ValueError(
            f"column {column!r} holds {mode!r} images but the model has {c} channel(s); convert "
            f"the images to {PIL_MODES.get(c, 'L or RGB')!r} or fit a model with matching "
            "channels."
        )
    if isinstance(example, PIL.Image.Image) and example.size != (w, h):
        raise ValueError(
            f"column {column!r} holds images of size {example.size[0]}x{example.size[1]}, but "
            f"the model's image_shape is {[c, h, w]}; resize the images or fit a model at this "
            "size."
        )
    return mode


def _array_dtype(feature: Any, column: str) -> str:
    """The value dtype at the bottom of nested list / array features: uint8 or float."""
    leaf = feature
    while leaf is not None and not isinstance(leaf, (Value, datasets.Array2D, datasets.Array3D)):
        leaf = getattr(leaf, "feature", None)
    dtype = getattr(leaf, "dtype", None)
    if dtype is None or not (dtype == "uint8" or dtype.startswith("float")):
        raise TypeError(
            f"column {column!r} must be an Image column or arrays of uint8 (0..255) or float "
            f"([0, 1]) values, got feature {feature}; cast it (e.g. ds.cast_column({column!r}, "
            "datasets.Image())) first."
        )
    return dtype


def _array_layout(feature: Any, example: Any, image_shape: tuple, column: str, dtype: str) -> str:
    """``CHW``, ``HWC`` or ``HW``: from the feature's shape, else the example's."""
    shape = getattr(feature, "shape", None)
    if shape is None and example is None:
        raise ValueError(f"column {column!r} is empty; cannot tell its image layout.")
    if example is not None:
        arr = np.asarray(example)
        shape = arr.shape if shape is None else shape
        if dtype.startswith("float") and arr.size and not (arr.min() >= 0 and arr.max() <= 1):
            raise ValueError(
                f"column {column!r} holds float values in [{arr.min():.3g}, {arr.max():.3g}]; "
                "flowaug expects float images in [0, 1]: rescale the column first."
            )
    c, h, w = image_shape
    shape = tuple(int(s) for s in shape)
    # CHW last: it wins where the layouts coincide (C == H == W)
    layouts = {(h, w, c): "HWC", (c, h, w): "CHW", **({(h, w): "HW"} if c == 1 else {})}
    if shape not in layouts:
        raise ValueError(
            f"column {column!r} holds images of shape {list(shape)}, but the model's image_shape "
            f"is {[c, h, w]}; resize the images or fit a model at this size."
        )
    return layouts[shape]


class ImageCodec:
    """Converts between one image column's values and tensors ``[C, H, W]``.

    Column kinds: ``Image`` (PIL, mode ``L``/``RGB``), ``Array2D``/``Array3D`` and nested lists
    of numbers, in ``CHW``, ``HWC`` or ``HW`` layout, uint8 (``0..255``) or float (``[0, 1]``).
    ``example`` (one value of the column, or ``None``) settles what the feature leaves open.
    """

    def __init__(self, feature: Any, example: Any, image_shape: Sequence[int], column: str):
        # these attributes, in this order, are part of augment_dataset's fingerprint
        self.column = column
        self.image_shape = shape = tuple(int(s) for s in image_shape)
        if isinstance(feature, datasets.Image):
            self.kind = "pil"
            self.mode = _pil_mode(feature, example, shape, column)
            self.dtype, self.layout = "uint8", "HWC"
        else:
            self.kind, self.dtype = "array", _array_dtype(feature, column)
            self.layout = _array_layout(feature, example, shape, column, self.dtype)

    @classmethod
    def of(cls, ds: datasets.Dataset, column: str, image_shape: Sequence[int]) -> ImageCodec:
        """The codec of ``ds``'s ``column``, its first value as the example."""
        return cls(ds.features[column], ds[0][column] if len(ds) else None, image_shape, column)

    def encode(self, images: Tensor) -> list[Any]:
        """Grid values ``[B, C, H, W]`` in ``[0, 1]`` -> column values."""
        if self.kind == "pil":
            return [tensor_to_pil(x, self.mode) for x in from_unit_float(images, _UINT8)]
        if self.dtype == "uint8":
            images = from_unit_float(images, _UINT8)
        else:
            images = images.to(getattr(torch, self.dtype))
        return list(self._to_layout(images, 1).contiguous().numpy())

    def decode(self, value: Any) -> Tensor:
        """One column value -> uint8 or float tensor ``[C, H, W]``."""
        if isinstance(value, PIL.Image.Image):
            return pil_to_tensor(value.convert(self.mode))
        arr = np.asarray(value)
        if arr.dtype != self.dtype:
            if self.dtype == "uint8" and arr.size and (arr.min() < 0 or arr.max() > 255):
                raise ValueError(
                    f"column {self.column!r} holds values in [{arr.min()}, {arr.max()}], not the "
                    "0..255 of uint8 images; rescale the column first."
                )
            arr = arr.astype(self.dtype)
        x = torch.from_numpy(np.ascontiguousarray(arr))
        x = x.permute(2, 0, 1) if self.layout == "HWC" else x
        return (x[None] if self.layout == "HW" else x).contiguous()

    def like(self, new: Tensor, old: Any) -> Any:
        """A tensor ``[C, H, W]`` back to the type of ``old``, an array or a (nested) list."""
        arr = self._to_layout(new, 0).contiguous().numpy()
        return arr if isinstance(old, np.ndarray) else arr.tolist()

    def _to_layout(self, x: Tensor, dim: int) -> Tensor:
        """``x`` with its channels at ``dim`` in the column's layout."""
        if self.layout == "HWC":
            return x.movedim(dim, -1)
        return x.select(dim, 0) if self.layout == "HW" else x
