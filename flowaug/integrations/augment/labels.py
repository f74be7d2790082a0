"""How :class:`~flowaug.FlowAugment` finds a sample's label and reads it as a class: a label it
finds but cannot read is an error, in every sample form, never passed over."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import PIL.Image
import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms.v2._utils import is_pure_tensor

__all__ = [
    "DEFAULT_CONFIDENCE",
    "check_class",
    "default_labels_getter",
    "label_like",
    "read_batch_labels",
    "read_label",
    "unlabelled_warning",
]

# Chosen on scikit-learn's digits (benchmarks/confidence.py, 70/30 split, 3 seeds): a Glow fitted
# for 300 (1000) steps gives the argmax class a different label than the truth for 2.6% (0.8%)
# of its training images; at posterior >= 0.99 it acts on 91% (98%) of them and 0.58% (0.22%) of
# those are flips. A flow fitted for 60 steps flips 29% by argmax and is confident on none.
DEFAULT_CONFIDENCE = 0.99


def label_like(value: Any) -> bool:
    """Whether ``value`` can be one class label: an int, or an integer tensor/array of one value."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    if isinstance(value, Tensor) and is_pure_tensor(value):
        return not value.is_floating_point() and value.dtype != torch.bool and value.numel() == 1
    return (
        isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.integer) and value.size == 1
    )


def _label_under_key(mapping: Mapping) -> Any:
    """The value under the label-like key of a dict (``"labels"`` or ``"label"`` first, then any
    key containing ``"label"``), or ``None``."""
    keys = [k for k in mapping if isinstance(k, str)]
    exact = [k for k in keys if k.lower() in ("labels", "label")]
    key = next(iter(exact or [k for k in keys if "label" in k.lower()]), None)
    return None if key is None else mapping[key]


def default_labels_getter(sample: Any) -> Any:
    """Find the label of a sample, or ``None``: the second item of a tuple/list, else the value
    under a label-like key of a dict (the sample, or its second item).

    The second item is the label whatever it holds (a str, a float, a one-hot vector), except
    ``None`` (no label), an image or another tv_tensor (boxes, masks): a label that cannot be
    read then gets a clear error instead of being passed over, which would leave the image
    replaced under the flow's own class while the sample keeps its label.
    """
    if isinstance(sample, (tuple, list)) and len(sample) >= 2:
        second = sample[1]
        if isinstance(second, Mapping):
            return _label_under_key(second)
        if isinstance(second, (tv_tensors.TVTensor, PIL.Image.Image)):
            return None
        return second
    return _label_under_key(sample) if isinstance(sample, Mapping) else None


def check_class(label: int, num_classes: int) -> int:
    """``label`` if it is one of the model's classes, else a ValueError saying what to do."""
    if not 0 <= label < num_classes:
        k = num_classes
        raise ValueError(
            f"FlowAugment got label {label}, but the model has {k} classes (0..{k - 1}); map "
            f"labels to 0..{k - 1} or fit the model on these classes."
        )
    return label


def read_label(label: Any, num_classes: int) -> int | None:
    """The class of one image's label (``None``: no label); an error for anything else."""
    if label is None:
        return None
    if type(label) is int:
        return check_class(label, num_classes)
    if isinstance(label, (Tensor, np.ndarray)) and not label_like(label):
        raise ValueError(
            f"FlowAugment needs one integer class label per image, got a "
            f"{type(label).__name__} of shape {list(label.shape)} and dtype {label.dtype}; "
            "for one-hot or mixed labels put FlowAugment before MixUp/CutMix; if it is not "
            "a label, pass labels_getter=None (the flow then assigns the class)."
        )
    if isinstance(label, float) and label.is_integer():
        raise TypeError(
            f"FlowAugment got the float label {label!r}; pass class labels as ints "
            f"(int(label)), or labels_getter=None if it is not a label."
        )
    if isinstance(label, bool) or not isinstance(label, (int, np.integer, Tensor, np.ndarray)):
        raise TypeError(
            f"FlowAugment could not read a class label from a {type(label).__name__} "
            f"({label!r:.80}); pass an int or an integer tensor (e.g. map class names to "
            "indices with a target_transform), or labels_getter=None to ignore labels."
        )
    return check_class(int(label), num_classes)


def read_batch_labels(labels: Any, batch_size: int, num_classes: int) -> Tensor:
    """The classes of a batch's labels: LongTensor ``[batch_size]`` on the CPU."""

    def unreadable(why: str) -> TypeError:
        return TypeError(
            f"FlowAugment could not read class labels for a batch of {batch_size} images from "
            f"a {type(labels).__name__} ({labels!r:.80}){why}"
        )

    if isinstance(labels, bool) or not isinstance(
        labels, (Tensor, np.ndarray, list, tuple, int, np.integer)
    ):
        raise unreadable(
            f"; pass an integer tensor of shape [{batch_size}], or labels_getter=None to "
            "ignore labels."
        )
    try:
        y = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError) as err:
        raise unreadable(f": {err}; pass an integer tensor of shape [{batch_size}].") from None
    if y.ndim != 1 or y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(
            f"FlowAugment expected integer labels of shape [{batch_size}] with a batch, "
            f"got shape {list(y.shape)} and dtype {y.dtype}; put FlowAugment before "
            "MixUp/CutMix, which make one-hot labels."
        )
    if y.shape[0] != batch_size:
        raise ValueError(f"FlowAugment got {y.shape[0]} labels for a batch of {batch_size} images.")
    y = y.cpu().long()
    if y.numel():
        low, high = torch.aminmax(y)  # one pass over the labels per batch
        check_class(int(low) if low < 0 else int(high), num_classes)
    return y


def unlabelled_warning(confidence: float) -> str:
    """The message of the once-per-transform warning for images seen without their label."""
    return (
        "FlowAugment got an image without its label, as a Dataset's transform= gives it (e.g. "
        "ImageFolder(root, transform=...)): it classifies every such image with the flow (one "
        "pass per class, slow) and replaces it only where the flow's class posterior is >= "
        f"confidence={confidence} (aug.stats counts the images replaced and kept). Pass the "
        "label with the image instead: call the transform on (image, label), e.g. a Dataset "
        "whose __getitem__ returns v2.Compose([...])(image, label); see the README."
    )
