"""The on-the-fly path: a ``Dataset.with_transform`` function that swaps rows' images for
synthetic ones of the same labels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import PIL.Image
from datasets import Features, Value
from torch import Tensor

from flowaug._checks import check_probability
from flowaug.flows.base import ConditionalFlow
from flowaug.integrations.augment import FlowAugment
from flowaug.integrations.hf.columns import ImageCodec
from flowaug.seeding import WorkerRandomState, derive_seed

__all__ = ["SyntheticTransform", "synthetic_transform"]


class SyntheticTransform:
    """A ``Dataset.with_transform`` function replacing a fraction ``p`` of each batch.

    Receives the batch as datasets gives it (a dict of lists, also for ``ds[0]``) and returns it
    with a random fraction ``p`` of the images replaced by synthetic images of the same labels,
    each of the same type as the one it replaces (PIL, list, array or tensor). Made by
    :func:`synthetic_transform`; picklable for DataLoader workers.
    """

    def __init__(
        self,
        model: ConditionalFlow,
        p: float = 0.5,
        image_column: str = "image",
        label_column: str | None = "label",
        mark_column: str | None = None,
        features: Features | None = None,
        **augment_kwargs: Any,
    ):
        self.p = check_probability(p)
        self.augment = FlowAugment(model, p=1.0, **augment_kwargs)
        self.image_column, self.label_column = image_column, label_column
        self.mark_column, self.features = mark_column, features
        seed = augment_kwargs.get("seed")
        # its own stream: the same seed as the bank draws would correlate "which rows" with
        # "which samples"
        self._rng = WorkerRandomState(None if seed is None else derive_seed(seed, 1))
        self._codec: ImageCodec | None = None

    def _codec_for(self, example: Any) -> ImageCodec:
        """How to read array-like images (lists, arrays): from ``features`` or the example."""
        if self._codec is None:
            feature = None if self.features is None else self.features.get(self.image_column)
            if isinstance(example, Mapping) and {"bytes", "path"} & set(example):
                raise TypeError(
                    f"column {self.image_column!r} holds undecoded images (Image(decode=False)); "
                    f"cast it with ds.cast_column({self.image_column!r}, datasets.Image()) "
                    "before with_transform."
                )
            if feature is None:
                # no Features: the example's dtype and shape tell the layout (datasets gives
                # uint8 arrays back as int64 lists)
                dtype = np.asarray(example).dtype
                feature = Value("uint8" if np.issubdtype(dtype, np.integer) else "float32")
            shape = self.augment.model.event_shape
            self._codec = ImageCodec(feature, example, shape, self.image_column)
        return self._codec

    def _replace(self, old: Any, label: Any) -> Any:
        """A synthetic image of class ``label`` (``None``: the flow's own) of ``old``'s type."""
        params = {"apply": True, "label": self.augment._label_value(label)}
        if isinstance(old, (PIL.Image.Image, Tensor)):
            self.augment._check_image(old)
            return self.augment.transform(old, params)
        codec = self._codec_for(old)
        x = codec.decode(old)
        self.augment._check_image(x)
        return codec.like(self.augment.transform(x, params), old)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        if self.image_column not in batch:
            raise KeyError(
                f"image_column {self.image_column!r} is not in the batch (columns: {list(batch)})."
            )
        if self.label_column is not None and self.label_column not in batch:
            raise KeyError(
                f"label_column {self.label_column!r} is not in the batch (columns: "
                f"{list(batch)}); name the label column, or pass label_column=None to let the "
                "flow assign the class."
            )
        images = batch[self.image_column]
        labels = batch[self.label_column] if self.label_column else [None] * len(images)
        replaced = [self._rng.python.random() < self.p for _ in images]
        batch = dict(batch)
        batch[self.image_column] = [
            self._replace(old, label) if flag else old
            for old, label, flag in zip(images, labels, replaced, strict=True)
        ]
        if self.mark_column is not None:
            batch[self.mark_column] = replaced
        return batch


def synthetic_transform(
    model: ConditionalFlow,
    p: float = 0.5,
    image_column: str = "image",
    label_column: str | None = "label",
    mode: str = "resample",
    temperature: float = 0.8,
    strength: float = 0.5,
    bank: Any = True,
    seed: int | None = None,
    filter_threshold: float | None = None,
    bank_size: int = 256,
    mark_column: str | None = None,
    features: Features | None = None,
    coarse_scales: int | None = None,
) -> SyntheticTransform:
    """A function for ``ds.with_transform(...)`` that swaps a fraction ``p`` of each batch for
    synthetic samples of the same labels (see :class:`flowaug.FlowAugment` for ``mode``,
    ``strength``, ``coarse_scales``, ``bank`` and ``seed``).

    Args:
        model: a trained class-conditional image flow.
        p: share of rows replaced.
        image_column, label_column: the columns to read (``label_column=None``: the flow
            assigns the class).
        mark_column: if given, a bool column of that name says which rows were replaced.
        features: the dataset's ``Features``, to read array columns' layout (PIL images and
            tensors need none).

    Example:
        >>> ds = ds.with_transform(synthetic_transform(model, p=0.3, seed=0))  # doctest: +SKIP
    """
    return SyntheticTransform(**locals())  # every argument, by name
