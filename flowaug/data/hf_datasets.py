"""``datasets.Dataset`` <-> :class:`FlowData`; ``datasets`` and PIL are imported when used."""

from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowaug.data.flowdata import FlowData
from flowaug.data.tensors import from_tensors, stack_images
from flowaug.pixels import tensor_to_pil, to_8bit

__all__ = ["find_columns", "from_hf_dataset", "is_saved_dataset", "load_split", "to_hf_dataset"]

IMAGE_COLUMNS = ("image", "img", "images", "pixel_values")
LABEL_COLUMNS = ("label", "labels", "target", "class")
SAVED_DATASET_FILES = ("dataset_info.json", "state.json", "dataset_dict.json")


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
        label_column = _first(features, datasets.ClassLabel, LABEL_COLUMNS)
    if image_column is None:
        image_column = _first(features, datasets.Image, IMAGE_COLUMNS)
    return image_column, label_column


def _first(features: Any, kind: type, usual: tuple[str, ...]) -> str | None:
    """The first column of feature type ``kind``, else the first present of the ``usual`` names."""
    found = (k for k, f in features.items() if isinstance(f, kind))
    return next(found, next((k for k in usual if k in features), None))


def from_hf_dataset(ds, levels, image_column, label_column, allow_unlabelled) -> FlowData:
    """A ``datasets.Dataset`` with an image column or numeric feature columns -> FlowData."""
    import datasets

    features = ds.features
    image_column, label_column = find_columns(features, image_column, label_column)
    label = features.get(label_column)
    names = list(label.names) if isinstance(label, datasets.ClassLabel) else None
    y = None if label_column is None else list(ds[label_column])
    if image_column is not None:
        x = stack_images(list(ds[image_column]), f"column {image_column!r}")
    else:
        kinds = ("int", "uint", "float", "bool")
        numeric = [
            k for k, f in features.items()
            if k != label_column and isinstance(f, datasets.Value) and f.dtype.startswith(kinds)
        ]
        if not numeric:
            raise ValueError(
                f"found no image column (an Image feature or one of {IMAGE_COLUMNS}) and no "
                f"numeric feature columns in {list(features)}; pass image_column=..."
            )
        x = torch.as_tensor(
            np.stack([np.asarray(list(ds[k]), dtype=np.float32) for k in numeric], axis=1)
        )
    return from_tensors(x, y, levels, names, "dataset", allow_unlabelled)


def is_saved_dataset(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``save_to_disk``."""
    return path.is_dir() and any((path / m).is_file() for m in SAVED_DATASET_FILES)


def load_split(path: Path) -> Any:
    """A ``save_to_disk`` folder as one ``datasets.Dataset``: the ``train`` split (or the only
    one) of a ``DatasetDict``."""
    import datasets

    ds = datasets.load_from_disk(str(path))
    if not isinstance(ds, datasets.DatasetDict):
        return ds
    if "train" not in ds and len(ds) != 1:
        raise ValueError(
            f"{path} holds splits {list(ds)} and none is 'train'; point --data at one split "
            "(save it with ds[split].save_to_disk)."
        )
    return ds["train"] if "train" in ds else next(iter(ds.values()))


def to_hf_dataset(data: FlowData, image_column: str = "image", label_column: str = "label"):
    """A :class:`FlowData` as an in-memory ``datasets.Dataset`` with a ``ClassLabel`` column.

    Integer images with at most 256 levels and 1 or 3 channels become 8-bit PIL images in an
    ``Image`` column (level ``k`` -> ``round(k * 255 / (levels - 1))``, as for scikit-learn's
    digits in ``recipes/hf_pipeline.py``); other images become float32 ``Array3D`` columns
    ``[C, H, W]`` in ``[0, 1]``; feature vectors become float32 columns named by
    ``data.feature_names`` (``x0, x1, ...`` without them).
    """
    import datasets

    if data.y is None:
        raise ValueError("data has no labels; augmentation needs a labelled data set.")
    names = data.class_names or [str(c) for c in range(max(data.num_classes, 1))]
    label = datasets.ClassLabel(names=list(names))
    columns: dict[str, Any] = {}
    features: dict[str, Any] = {}
    if data.is_image:
        c = data.x.shape[1]
        if data.is_discrete and data.levels is not None and data.levels <= 256 and c in (1, 3):
            mode = "L" if c == 1 else "RGB"
            pixels = torch.from_numpy(to_8bit(data.x, data.levels))
            columns[image_column] = [tensor_to_pil(p, mode) for p in pixels]
            features[image_column] = datasets.Image()
        else:
            x = data.x.float()
            if data.is_discrete:
                x = x / ((data.levels or 256) - 1)
            columns[image_column] = list(x.numpy())
            features[image_column] = datasets.Array3D(shape=tuple(x.shape[1:]), dtype="float32")
    else:
        x = data.x.float().numpy()
        feature_names = data.feature_names or [f"x{i}" for i in range(x.shape[1])]
        if len(feature_names) != x.shape[1] or label_column in feature_names:
            raise ValueError(
                f"feature_names must name the {x.shape[1]} features, none of them "
                f"{label_column!r}; got {feature_names}."
            )
        features.update({n: datasets.Value("float32") for n in feature_names})
        columns.update({n: x[:, i] for i, n in enumerate(feature_names)})
    features[label_column] = label
    columns[label_column] = data.y.tolist()
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))
