"""Tensors, arrays, lists and torch Datasets -> :class:`FlowData`; every adapter ends here."""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowaug.data.flowdata import FlowData
from flowaug.pixels import check_levels, image_to_chw

__all__ = ["array_to_tensor", "from_tensors", "from_torch_dataset", "stack_images", "to_labels"]

_UNLABELLED_HINT = (
    " -1 marks an unlabelled row (scikit-learn's convention): flowaug.fit(data) and "
    "FlowTrainer.fit learn from such rows, this step needs labels."
)


def stack_images(images: Sequence[Any], what: str, names: Sequence[str] | None = None) -> Tensor:
    """Images -> ``[N, C, H, W]``; ``names`` (e.g. file paths) name the items in errors."""
    names = [f"{what}[{i}]" for i in range(len(images))] if names is None else list(names)
    tensors = [image_to_chw(img, name) for img, name in zip(images, names, strict=True)]
    if not tensors:
        raise ValueError(f"{what} is empty; need at least one sample.")
    for name, t in zip(names, tensors, strict=True):
        if t.shape != tensors[0].shape:
            raise ValueError(
                f"{name} has shape {list(t.shape)} but {names[0]} has {list(tensors[0].shape)}; "
                "flows need one image size: resize the images first (`flowaug fit --image-size "
                "N`, or torchvision v2.Resize)."
            )
    return torch.stack(tensors)


def to_labels(
    y: Any, n: int, class_names: Sequence[str] | None, allow_unlabelled: bool = False
) -> tuple[Tensor, list[str] | None]:
    """Labels (ints or strings) -> LongTensor ``[n]`` and the class names."""
    if allow_unlabelled and isinstance(y, (list, tuple)) and any(v is None for v in y):
        y = [-1 if v is None else v for v in y]  # (x, None) items: unlabelled
    arr = np.asarray(y.cpu() if isinstance(y, Tensor) else y)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"y must hold one label per sample ({n}), got shape {list(arr.shape)}.")
    if arr.dtype.kind in "USO":
        # string labels: classes in sorted order, as scikit-learn's LabelEncoder does
        names, codes = np.unique(arr.astype(str), return_inverse=True)
        return torch.as_tensor(codes, dtype=torch.long), list(names)
    if arr.dtype.kind == "f" and not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
        raise TypeError("y must hold integer class indices, got non-integer floats.")
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"y must hold integer class indices or strings, got dtype {arr.dtype}.")
    labels = torch.as_tensor(arr.astype(np.int64))
    lowest = int(labels.min())
    if lowest < -1 or (lowest == -1 and not allow_unlabelled):
        hint = _UNLABELLED_HINT if lowest == -1 else ""
        raise ValueError(f"y holds negative class {lowest}; classes are 0..K-1.{hint}")
    return labels, None if class_names is None else [str(c) for c in class_names]


def _infer_levels(x: Tensor, levels: int | None) -> tuple[Tensor, int | None]:
    """Decide how ``x`` is represented: integer levels (discrete) or float (continuous)."""
    if x.dim() == 4 and x.dtype == torch.bool:
        x, levels = x.to(torch.uint8), 2 if levels is None else levels
    if x.dim() == 4 and not x.is_floating_point():  # integer images
        if x.numel() and x.min() < 0:
            raise ValueError(f"integer images must be >= 0, got a minimum of {int(x.min())}.")
        top = int(x.max()) if x.numel() else 0
        if levels is None and x.dtype != torch.uint8 and top <= 127:
            raise ValueError(
                f"x holds {x.dtype} images with values in [0, {top}]; say how many intensity "
                "levels they have with levels=... (e.g. 17 for scikit-learn digits, 256 for "
                "8-bit images)."
            )
        levels = check_levels(256 if levels is None else levels)
        if top >= levels:
            raise ValueError(f"x has values up to {top}, outside [0, {levels - 1}] for {levels=}.")
        return (x if x.dtype in (torch.uint8, torch.int64) else x.long()), levels
    x = x.float()
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf values; clean or drop those samples first.")
    if x.dim() != 4:  # feature vectors: continuous
        return x, None
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"float images must lie in [0, 1], got values in [{float(x.min()):.3g}, "
            f"{float(x.max()):.3g}]; pass integer images with levels=..., or rescale."
        )
    scale = (check_levels(levels) if levels is not None else 256) - 1
    k = torch.round(x * scale)
    if torch.allclose(k / scale, x, atol=1e-4):
        # float images that are really quantized (e.g. ToTensor's k/255) go back to levels,
        # since a flow fitted to exact grid points has a degenerate density
        return k.to(torch.int64 if scale > 255 else torch.uint8), scale + 1
    if levels is not None:
        raise ValueError(
            f"x holds float images that are not multiples of 1/{scale} (levels={levels}); "
            "pass the integer images instead, or leave levels=None for continuous data."
        )
    return x, None


def from_tensors(
    x: Tensor, y: Any, levels: int | None, class_names: Any, what: str, allow_unlabelled=False
) -> FlowData:
    """Images ``[N, C, H, W]`` / ``[N, H, W]`` or features ``[N, F]`` with labels -> FlowData;
    ``what`` names the data in errors."""
    if x.dim() == 3:
        x = x[:, None]  # [N, H, W] -> [N, 1, H, W]
    if x.dim() not in (2, 4):
        raise ValueError(
            f"{what} must be images [N, C, H, W] / [N, H, W] or features [N, F], got shape "
            f"{list(x.shape)}."
        )
    if x.shape[0] == 0:
        raise ValueError(f"{what} is empty; need at least one sample.")
    x, levels = _infer_levels(x, levels)
    labels, names = (None, None)
    if y is not None:
        labels, names = to_labels(y, x.shape[0], class_names, allow_unlabelled)
        if bool((labels < 0).all()) and names is None:
            labels = None  # nothing labelled: an unlabelled data set
    num_classes = 0 if labels is None else int(labels.max()) + 1
    if names is not None:
        if len(names) < num_classes:
            raise ValueError(
                f"class_names has {len(names)} entries but labels go up to {num_classes - 1}; "
                "pass one name per class."
            )
        num_classes = len(names)
    return FlowData(x=x, y=labels, levels=levels, class_names=names, num_classes=num_classes)


def array_to_tensor(arr: np.ndarray) -> Tensor:
    """A numeric array -> tensor; ``[N, H, W, C]`` images become ``[N, C, H, W]``."""
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"x must be a numeric array, got dtype {arr.dtype}.")
    if arr.ndim == 4 and arr.shape[-1] in (1, 3, 4) and arr.shape[-1] < arr.shape[1]:
        arr = arr.transpose(0, 3, 1, 2)  # [N, H, W, C] -> [N, C, H, W]
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr))


def from_torch_dataset(ds: Any, levels: int | None, allow_unlabelled: bool) -> FlowData:
    """A sized torch Dataset of ``(image or feature vector, label)`` items -> FlowData."""
    images, labels = [], []
    for i in range(len(ds)):
        item = ds[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise TypeError(
                f"dataset[{i}] must be an (image, label) pair, got {type(item).__name__}; wrap "
                "the dataset so that it returns (image, label)."
            )
        images.append(item[0])
        labels.append(-1 if item[1] is None and allow_unlabelled else int(item[1]))
    if isinstance(images[0], (Tensor, np.ndarray)) and images[0].ndim == 1:  # feature vectors
        x = torch.stack([torch.as_tensor(np.asarray(v)) for v in images])
    else:
        x = stack_images(images, "dataset")
    classes = getattr(ds, "classes", None)
    return from_tensors(x, labels, levels, classes, "dataset", allow_unlabelled)
