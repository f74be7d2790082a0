"""Adapters from user data to tensors the trainer and models consume.

Everything ends as a :class:`FlowData`: ``x`` (all samples in memory, as befits scarce data),
integer labels ``y``, the number of intensity ``levels`` for integer images, and class names.

Integer images stay integer (``uint8`` or ``int64``): the trainer hands each batch to
``model.prepare_batch``, which dequantizes it with fresh noise every time, so the flow never sees
the same continuous point twice and its bits/dim stay comparable with published numbers.

Example:
    >>> data = load_sklearn("digits")
    >>> data.x.shape, data.x.dtype, data.levels, data.num_classes
    (torch.Size([1797, 1, 8, 8]), torch.int64, 17, 10)
    >>> data.class_names[:3]
    ['0', '1', '2']
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowaug.pixels import check_levels, image_to_chw, to_8bit

__all__ = [
    "FlowData",
    "as_flow_data",
    "load_sklearn",
    "load_data",
    "load_image_folder",
    "load_hf_dataset",
    "to_hf_dataset",
    "find_columns",
    "SKLEARN_DATASETS",
    "IMAGE_EXTENSIONS",
]

SKLEARN_DATASETS = ("digits", "iris", "wine", "breast_cancer")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_IMAGE_COLUMNS = ("image", "img", "images", "pixel_values")
_LABEL_COLUMNS = ("label", "labels", "target", "class")


@dataclass(frozen=True)
class FlowData:
    """A labelled data set held as tensors.

    Attributes:
        x: images ``[N, C, H, W]`` (integer with ``levels``, or float in ``[0, 1]``) or float
            feature vectors ``[N, F]``.
        y: LongTensor ``[N]`` of classes in ``[0, num_classes)``, or ``None`` (unlabelled).
        levels: intensity levels of integer images (``None`` for float data).
        class_names: one name per class, or ``None``.
        num_classes: number of classes (0 when unlabelled).
        feature_names: for feature vectors, one name per feature (e.g. scikit-learn's), or
            ``None`` (``x0, x1, ...``).
    """

    x: Tensor
    y: Tensor | None
    levels: int | None = None
    class_names: list[str] | None = None
    num_classes: int = 0
    feature_names: list[str] | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def event_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. ``(1, 8, 8)`` or ``(13,)``."""
        return tuple(self.x.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.x.dim() == 4

    @property
    def is_discrete(self) -> bool:
        """Integer data, to be dequantized (and scored in discrete bits/dim)."""
        return not self.x.is_floating_point()

    def subset(self, index: Tensor | np.ndarray | Sequence[int]) -> FlowData:
        """The samples at ``index`` (same levels, classes and names)."""
        index = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return replace(self, x=self.x[index], y=None if self.y is None else self.y[index])

    @property
    def unlabelled_mask(self) -> Tensor:
        """Bool tensor ``[N]``: rows without a label (``y is None``, or label ``-1``)."""
        if self.y is None:
            return torch.ones(len(self), dtype=torch.bool)
        return self.y < 0

    def labelled(self) -> FlowData:
        """The rows that carry a label (all of them unless some are ``-1``)."""
        if self.y is None:
            return self.subset([])
        mask = self.unlabelled_mask
        return self if not bool(mask.any()) else self.subset(torch.nonzero(~mask).flatten())

    def unlabelled(self) -> FlowData:
        """The rows without a label, with ``y=None`` (the same levels, classes and names)."""
        index = torch.nonzero(self.unlabelled_mask).flatten()
        return replace(self, x=self.x[index], y=None)


# --- conversion helpers ----------------------------------------------------------------------


def _stack_images(
    images: Sequence[Any], what: str, names: Sequence[str] | None = None
) -> Tensor:
    """Images -> ``[N, C, H, W]``; ``names`` (e.g. file paths) name the items in errors."""
    names = [f"{what}[{i}]" for i in range(len(images))] if names is None else list(names)
    tensors = [image_to_chw(img, name) for img, name in zip(images, names, strict=True)]
    if not tensors:
        raise ValueError(f"{what} is empty; need at least one sample.")
    shape = tensors[0].shape
    for name, t in zip(names, tensors, strict=True):
        if t.shape != shape:
            raise ValueError(
                f"{name} has shape {list(t.shape)} but {names[0]} has {list(shape)}; flows "
                "need one image size: resize the images first (`flowaug fit --image-size N`, "
                "or torchvision v2.Resize)."
            )
    return torch.stack(tensors)


def _labels_to_tensor(
    y: Any, n: int, class_names: Sequence[str] | None, allow_unlabelled: bool = False
) -> tuple[Tensor, list[str] | None]:
    if allow_unlabelled and isinstance(y, (list, tuple)) and any(v is None for v in y):
        y = [-1 if v is None else v for v in y]  # (x, None) items: unlabelled
    arr = np.asarray(y.cpu() if isinstance(y, Tensor) else y)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"y must hold one label per sample ({n}), got shape {list(arr.shape)}.")
    if arr.dtype.kind in "USO":
        # string labels: classes in sorted order, as scikit-learn's LabelEncoder does
        names, codes = np.unique(arr.astype(str), return_inverse=True)
        return torch.as_tensor(codes, dtype=torch.long), list(names)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise TypeError("y must hold integer class indices, got non-integer floats.")
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"y must hold integer class indices or strings, got dtype {arr.dtype}.")
    labels = torch.as_tensor(arr.astype(np.int64))
    if n and labels.min() < 0:
        lowest = int(labels.min())
        if lowest < -1 or not allow_unlabelled:
            hint = (
                " -1 marks an unlabelled row (scikit-learn's convention): flowaug.fit(data) and "
                "FlowTrainer.fit learn from such rows, this step needs labels."
                if lowest == -1
                else ""
            )
            raise ValueError(f"y holds negative class {lowest}; classes are 0..K-1.{hint}")
    return labels, None if class_names is None else [str(c) for c in class_names]


def _infer_levels(x: Tensor, levels: int | None) -> tuple[Tensor, int | None]:
    """Decide how ``x`` is represented: integer levels (discrete) or float (continuous)."""
    if x.dim() != 4:  # feature vectors: continuous
        x = x.float()
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or inf values; clean or drop those samples first.")
        return x, None
    if x.dtype == torch.bool:
        x = x.to(torch.uint8)
        levels = 2 if levels is None else levels
    if x.is_floating_point():
        x = x.float()
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or inf values; clean or drop those samples first.")
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
    if x.numel() and x.min() < 0:
        raise ValueError(f"integer images must be >= 0, got a minimum of {int(x.min())}.")
    top = int(x.max()) if x.numel() else 0
    if levels is None:
        if x.dtype == torch.uint8 or top > 127:
            levels = 256
        else:
            raise ValueError(
                f"x holds {x.dtype} images with values in [0, {top}]; say how many intensity "
                "levels they have with levels=... (e.g. 17 for scikit-learn digits, 256 for "
                "8-bit images)."
            )
    levels = check_levels(levels)
    if top >= levels:
        raise ValueError(
            f"x has values up to {top}, outside [0, {levels - 1}] for levels={levels}."
        )
    return (x if x.dtype in (torch.uint8, torch.int64) else x.long()), levels


def _finish(
    x: Tensor,
    y: Any,
    levels: int | None,
    class_names: Sequence[str] | None,
    what: str,
    allow_unlabelled: bool = False,
) -> FlowData:
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
        labels, names = _labels_to_tensor(y, x.shape[0], class_names, allow_unlabelled)
        if bool((labels < 0).all()) and names is None:
            labels = None  # nothing labelled: an unlabelled data set
    num_classes = 0
    if labels is not None:
        num_classes = int(labels.max()) + 1
        if names is not None:
            if len(names) < num_classes:
                raise ValueError(
                    f"class_names has {len(names)} entries but labels go up to "
                    f"{num_classes - 1}; pass one name per class."
                )
            num_classes = len(names)
    return FlowData(x=x, y=labels, levels=levels, class_names=names, num_classes=num_classes)


def _from_torch_dataset(ds: Any, levels: int | None, allow_unlabelled: bool) -> FlowData:
    images, labels = [], []
    for i in range(len(ds)):
        item = ds[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise TypeError(
                f"dataset[{i}] must be an (image, label) pair, got {type(item).__name__}; wrap "
                "the dataset so that it returns (image, label)."
            )
        images.append(item[0])
        if item[1] is None and allow_unlabelled:
            labels.append(-1)  # (image, None): unlabelled
        else:
            labels.append(int(item[1]))
    x = _stack_images(images, "dataset") if not _is_vector(images[0]) else _stack_vectors(images)
    classes = getattr(ds, "classes", None)
    return _finish(x, labels, levels, classes, "dataset", allow_unlabelled)


def _is_vector(item: Any) -> bool:
    return isinstance(item, (Tensor, np.ndarray)) and item.ndim == 1


def _stack_vectors(items: Sequence[Any]) -> Tensor:
    return torch.stack([torch.as_tensor(np.asarray(v)) for v in items])


def _from_hf_dataset(
    ds: Any,
    levels: int | None,
    image_column: str | None,
    label_column: str | None,
    allow_unlabelled: bool = False,
) -> FlowData:
    import datasets

    features = ds.features
    if label_column is None:
        label_column = next(
            (k for k, f in features.items() if isinstance(f, datasets.ClassLabel)),
            next((k for k in _LABEL_COLUMNS if k in features), None),
        )
    elif label_column not in features:
        raise ValueError(f"label_column {label_column!r} is not a column of {list(features)}.")
    if image_column is None:
        image_column = next(
            (k for k, f in features.items() if isinstance(f, datasets.Image)),
            next((k for k in _IMAGE_COLUMNS if k in features), None),
        )
    elif image_column not in features:
        raise ValueError(f"image_column {image_column!r} is not a column of {list(features)}.")
    names = None
    if label_column is not None and isinstance(features[label_column], datasets.ClassLabel):
        names = list(features[label_column].names)
    y = None if label_column is None else list(ds[label_column])
    if image_column is not None:
        x = _stack_images(list(ds[image_column]), f"column {image_column!r}")
    else:
        numeric = [
            k
            for k, f in features.items()
            if k != label_column
            and isinstance(f, datasets.Value)
            and (f.dtype.startswith(("int", "uint", "float")) or f.dtype == "bool")
        ]
        if not numeric:
            raise ValueError(
                f"found no image column (an Image feature or one of {_IMAGE_COLUMNS}) and no "
                f"numeric feature columns in {list(features)}; pass image_column=..."
            )
        x = torch.as_tensor(
            np.stack([np.asarray(list(ds[k]), dtype=np.float32) for k in numeric], axis=1)
        )
    return _finish(x, y, levels, names, "dataset", allow_unlabelled)


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
            - ``(x, y)``: tensors or arrays, ``x`` images ``[N, C, H, W]`` / ``[N, H, W]``
              (numpy ``[N, H, W, C]`` too) or features ``[N, F]``, ``y`` ``[N]`` integer or
              string labels;
            - ``x`` alone with labels in ``y``;
            - a torch ``Dataset`` of ``(image, label)`` with PIL / tensor / array images
              (``dataset.classes`` gives the class names, as in torchvision);
            - a ``datasets.Dataset`` with an image column (``Image`` feature or arrays) and a
              label column (``ClassLabel`` names become class names), or numeric feature
              columns and a label column.
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
        :class:`FlowData`. Integer images stay integer (``uint8`` / ``int64``); float images that
        sit on a ``k / (levels - 1)`` grid (as ``ToTensor`` output does) are turned back into
        integers; feature vectors become float32.
    """
    if isinstance(data, FlowData):
        if levels is not None and data.is_discrete and data.levels != levels:
            data = _finish(data.x, data.y, levels, data.class_names, "data", allow_unlabelled)
        if not allow_unlabelled and data.y is not None and bool((data.y < 0).any()):
            _labels_to_tensor(data.y, len(data), None)  # the error for -1 labels
        if class_names is not None:
            data = replace(data, class_names=[str(c) for c in class_names])
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2 and y is None:
        if isinstance(data[0], (Tensor, np.ndarray)):  # [x, y] as well as (x, y)
            data, y = data
    if isinstance(data, (Tensor, np.ndarray)):
        x = torch.as_tensor(data) if isinstance(data, Tensor) else _array_to_tensor(data)
        return _finish(x.detach().cpu(), y, levels, class_names, "x", allow_unlabelled)
    try:
        import datasets

        if isinstance(data, datasets.Dataset):
            out = _from_hf_dataset(data, levels, image_column, label_column, allow_unlabelled)
            return replace(out, class_names=list(class_names)) if class_names else out
        if isinstance(data, (datasets.DatasetDict, datasets.IterableDataset)):
            raise TypeError(
                f"data is a {type(data).__name__}; pass one split as a datasets.Dataset "
                "(e.g. ds['train'])."
            )
    except ImportError:  # datasets is a dependency, but keep the torch path usable without it
        pass
    if isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__"):
        out = _from_torch_dataset(data, levels, allow_unlabelled)
        return replace(out, class_names=list(class_names)) if class_names else out
    if hasattr(data, "columns") and hasattr(data, "to_numpy"):  # a pandas DataFrame
        raise TypeError(
            "data is a DataFrame: tables train through their column encoders, with "
            "flowaug.fit(df, label=...) or TabularFlow.from_frame(df, label=...) and "
            "model.encode_frame(df) before FlowTrainer.fit."
        )
    raise TypeError(
        f"data must be (x, y) tensors/arrays, a torch Dataset of (image, label) or a "
        f"datasets.Dataset, got {type(data).__name__}."
    )


def _array_to_tensor(arr: np.ndarray) -> Tensor:
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"x must be a numeric array, got dtype {arr.dtype}.")
    if arr.ndim == 4 and arr.shape[-1] in (1, 3, 4) and arr.shape[-1] < arr.shape[1]:
        arr = arr.transpose(0, 3, 1, 2)  # [N, H, W, C] -> [N, C, H, W]
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr))


# --- bundled and on-disk data sets -----------------------------------------------------------


def load_sklearn(name: str) -> FlowData:
    """A data set bundled with scikit-learn (no download).

    Args:
        name: ``"digits"`` (images ``[1797, 1, 8, 8]`` int64 in ``[0, 16]``, ``levels=17``) or a
            tabular set: ``"iris"``, ``"wine"``, ``"breast_cancer"`` (float32 features).
    """
    from sklearn import datasets as skd

    loaders = {
        "digits": skd.load_digits,
        "iris": skd.load_iris,
        "wine": skd.load_wine,
        "breast_cancer": skd.load_breast_cancer,
    }
    if name not in loaders:
        raise ValueError(
            f"unknown scikit-learn data set {name!r}; choose one of {SKLEARN_DATASETS}."
        )
    bunch = loaders[name]()
    names = [str(c) for c in bunch.target_names]
    if name == "digits":
        x = torch.as_tensor(bunch.images.astype(np.int64))[:, None]
        return _finish(x, bunch.target, 17, names, "digits")
    data = _finish(
        torch.as_tensor(bunch.data, dtype=torch.float32), bunch.target, None, names, name
    )
    return replace(data, feature_names=[str(f) for f in bunch.feature_names])


def load_image_folder(
    root: str | os.PathLike, levels: int | None = None, size: int | None = None
) -> FlowData:
    """Images in ``root/<class name>/<file>`` (torchvision ``ImageFolder`` layout), read locally.

    Classes are the sub-folder names in sorted order; a folder whose images sit directly in
    ``root`` (no class sub-folders) is unlabelled (``y=None``), e.g. for
    ``fit(unlabelled=...)``. Grayscale folders give 1 channel, anything
    else 3 (RGB); all images must have one size, unless ``size`` is given: then every image is
    resized to ``size x size`` (bilinear) as it is read.
    """
    from PIL import Image

    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files, labels = [], []
    for label, cls in enumerate(classes):
        for f in sorted((root / cls).rglob("*")):
            if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file():
                files.append(f)
                labels.append(label)
    if not files:  # images directly in root: an unlabelled folder
        files = [f for f in sorted(root.iterdir()) if f.suffix.lower() in IMAGE_EXTENSIONS]
        files = [f for f in files if f.is_file()]
        classes, labels = [], None
    if not files:
        raise ValueError(
            f"{root} holds no images in class sub-folders (root/<class>/<image>, extensions "
            f"{IMAGE_EXTENSIONS}) nor directly in it (unlabelled images)."
        )
    opened = []
    for f in files:
        try:
            with Image.open(f) as img:
                img.load()
        except OSError as err:  # PIL.UnidentifiedImageError, truncated files
            raise ValueError(f"{f} is not a readable image ({err}); remove or replace it.") from err
        if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            raise ValueError(
                f"{f} is a {img.mode!r} (16-bit or float) image; flowaug reads 8-bit images "
                "(L, RGB): convert the folder to 8-bit first."
            )
        opened.append(img)
    mode = "L" if all(img.mode in ("L", "1") for img in opened) else "RGB"
    converted = [img.convert(mode) for img in opened]
    if size is not None:
        converted = [img.resize((size, size), Image.Resampling.BILINEAR) for img in converted]
    x = _stack_images(converted, str(root), [str(f) for f in files])
    return _finish(x, labels, levels, classes or None, str(root))


def _load_hf_split(path: Path) -> Any:
    """A ``save_to_disk`` folder as one ``datasets.Dataset``: the ``train`` split (or the only
    one) of a ``DatasetDict``."""
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if "train" in ds:
            ds = ds["train"]
        elif len(ds) == 1:
            ds = next(iter(ds.values()))
        else:
            raise ValueError(
                f"{path} holds splits {list(ds)} and none is 'train'; point --data at one split "
                "(save it with ds[split].save_to_disk)."
            )
    return ds


def _load_hf_directory(path: Path, levels: int | None, allow_unlabelled: bool) -> FlowData:
    return as_flow_data(_load_hf_split(path), levels=levels, allow_unlabelled=allow_unlabelled)


_HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


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
    if image_size is not None:
        from flowaug.resize import check_image_size, resize_images

        check_image_size(image_size)
        path = Path(str(spec))
        if path.is_dir() and not any((path / m).is_file() for m in _HF_MARKERS):
            return load_image_folder(path, levels, size=image_size)
        return resize_images(load_data(spec, levels, option, allow_unlabelled), image_size)
    text = str(spec)
    if text.startswith("sklearn:"):
        data = load_sklearn(text.split(":", 1)[1])
        if levels is not None and levels != data.levels:
            raise ValueError(
                f"{option} {text!r} comes with its own levels ({data.levels}); levels={levels} "
                "applies to image folders and saved datasets only: leave it unset."
            )
        return data
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(
            f"{option} {text!r}: no such file or directory; use sklearn:<name> "
            f"({', '.join(SKLEARN_DATASETS)}), a saved datasets directory or an image folder."
        )
    if not path.is_dir():
        raise ValueError(f"{option} {text!r} must be a directory (saved dataset or image folder).")
    if any((path / m).is_file() for m in _HF_MARKERS):
        return _load_hf_directory(path, levels, allow_unlabelled)
    return load_image_folder(path, levels)


# --- as datasets.Dataset (for the HF hook and the CLI) ---------------------------------------


def find_columns(
    features: Any, image_column: str | None = None, label_column: str | None = None
) -> tuple[str | None, str | None]:
    """The image and label columns of a ``datasets.Features``: the given names (checked), else
    the first ``Image`` / ``ClassLabel`` feature, else a usual name (``image``, ``label``, ...).
    """
    import datasets

    for name, what in ((image_column, "image_column"), (label_column, "label_column")):
        if name is not None and name not in features:
            raise ValueError(f"{what} {name!r} is not a column of {list(features)}.")
    if label_column is None:
        label_column = next(
            (k for k, f in features.items() if isinstance(f, datasets.ClassLabel)),
            next((k for k in _LABEL_COLUMNS if k in features), None),
        )
    if image_column is None:
        image_column = next(
            (k for k, f in features.items() if isinstance(f, datasets.Image)),
            next((k for k in _IMAGE_COLUMNS if k in features), None),
        )
    return image_column, label_column


def to_hf_dataset(data: FlowData, image_column: str = "image", label_column: str = "label"):
    """A :class:`FlowData` as an in-memory ``datasets.Dataset`` with a ``ClassLabel`` column.

    Integer images with at most 256 levels and 1 or 3 channels become 8-bit PIL images in an
    ``Image`` column (level ``k`` -> ``round(k * 255 / (levels - 1))``, as for scikit-learn's
    digits in ``recipes/hf_pipeline.py``); other images become float32 ``Array3D`` columns
    ``[C, H, W]`` in ``[0, 1]``; feature vectors become float32 columns named by
    ``data.feature_names`` (``x0, x1, ...`` without them).
    """
    import datasets
    import PIL.Image

    if data.y is None:
        raise ValueError("data has no labels; augmentation needs a labelled data set.")
    names = data.class_names or [str(c) for c in range(max(data.num_classes, 1))]
    label = datasets.ClassLabel(names=list(names))
    columns: dict[str, Any] = {}
    if data.is_image:
        c = data.x.shape[1]
        if data.is_discrete and data.levels is not None and data.levels <= 256 and c in (1, 3):
            pixels = to_8bit(data.x, data.levels)
            mode = "L" if c == 1 else "RGB"
            columns[image_column] = [
                PIL.Image.fromarray(p[0] if c == 1 else p.transpose(1, 2, 0), mode=mode)
                for p in pixels
            ]
            feature: Any = datasets.Image()
        else:
            x = data.x.float()
            if data.is_discrete:
                x = x / ((data.levels or 256) - 1)
            columns[image_column] = list(x.numpy())
            feature = datasets.Array3D(shape=tuple(x.shape[1:]), dtype="float32")
        features = datasets.Features({image_column: feature, label_column: label})
    else:
        x = data.x.float().numpy()
        feature_names = data.feature_names or [f"x{i}" for i in range(x.shape[1])]
        if len(feature_names) != x.shape[1] or label_column in feature_names:
            raise ValueError(
                f"feature_names must name the {x.shape[1]} features, none of them "
                f"{label_column!r}; got {feature_names}."
            )
        features = datasets.Features(
            {**{n: datasets.Value("float32") for n in feature_names}, label_column: label}
        )
        columns.update({n: x[:, i] for i, n in enumerate(feature_names)})
    columns[label_column] = data.y.tolist()
    return datasets.Dataset.from_dict(columns, features=features)


def load_hf_dataset(spec: str | os.PathLike, option: str = "--data"):
    """The data a CLI ``--data`` argument names, as a ``datasets.Dataset``.

    A ``save_to_disk`` directory is read with ``datasets.load_from_disk`` as it is (a
    ``DatasetDict``: its ``train`` split, or its only split); ``sklearn:<name>`` and image
    folders are read with :func:`load_data` and converted with :func:`to_hf_dataset`.
    """

    text = str(spec)
    path = Path(text)
    markers = ("dataset_info.json", "state.json", "dataset_dict.json")
    saved = path.is_dir() and any((path / m).is_file() for m in markers)
    if text.startswith("sklearn:") or not saved:
        return to_hf_dataset(load_data(spec, option=option))  # errors name the option
    return _load_hf_split(path)
