"""The one form every adapter returns: :class:`FlowData`, tensors with their levels and names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

__all__ = ["FlowData"]


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
        return torch.ones(len(self), dtype=torch.bool) if self.y is None else self.y < 0

    def labelled(self) -> FlowData:
        """The rows that carry a label (all of them unless some are ``-1``)."""
        mask = self.unlabelled_mask
        return self if not bool(mask.any()) else self.subset(torch.nonzero(~mask).flatten())

    def unlabelled(self) -> FlowData:
        """The rows without a label, with ``y=None`` (the same levels, classes and names)."""
        index = torch.nonzero(self.unlabelled_mask).flatten()
        return replace(self, x=self.x[index], y=None)
