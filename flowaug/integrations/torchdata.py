"""Synthetic data for plain PyTorch: a map-style dataset and a real/synthetic mix."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset, Subset

from flowaug._checks import check_temperature
from flowaug.flows.base import ConditionalFlow, check_conditional_model
from flowaug.pixels import from_codes, to_codes
from flowaug.sampling import class_counts, eval_mode
from flowaug.seeding import derive_seed

__all__ = ["SyntheticDataset", "mix_datasets"]


class SyntheticDataset(Dataset):
    """``n_per_class`` synthetic samples of every class, generated on access, stored nowhere.

    Index ``i`` holds class ``labels[i]`` (classes laid out one after the other) and latent
    noise from a generator seeded with ``derive_seed(seed, i)``: the same index always gives the
    same sample, whatever the order, batch or worker. DataLoader fetches whole batches through
    :meth:`__getitems__` in one flow pass (equal to one-by-one access up to float rounding,
    which can move a pixel by one level on rare ties).

    Arguments:
        model: a class-conditional flow.
        n_per_class: an int for every class, or per-class counts (``{class: n}`` or a list).
        seed: base seed; temperature: latent noise scale.
        dtype: ``torch.float32`` (images in ``[0, 1]`` on the data grid; model-space vectors
            for non-image models) or ``torch.uint8`` (images in ``0..255``).
        transform: applied to each image, as in torchvision datasets.

    Example:
        >>> from flowaug import Glow
        >>> model = Glow((1, 8, 8), 10, depth=1, hidden=8, levels=17)
        >>> ds = SyntheticDataset(model, n_per_class=5, seed=0)
        >>> len(ds), ds[7][1]
        (50, 1)
        >>> torch.equal(ds[7][0], ds[7][0])
        True
    """

    def __init__(
        self,
        model: ConditionalFlow,
        n_per_class: int | Mapping[int, int] | Sequence[int],
        seed: int = 0,
        temperature: float = 0.8,
        dtype: torch.dtype = torch.float32,
        transform: Callable[[Tensor], Any] | None = None,
    ):
        self.model = check_conditional_model(model)
        counts = class_counts(n_per_class, model.num_classes)
        self.labels = torch.cat(
            [torch.full((n,), c, dtype=torch.long) for c, n in sorted(counts.items())]
            or [torch.empty(0, dtype=torch.long)]
        )
        if dtype != torch.uint8 and not dtype.is_floating_point:
            raise ValueError(f"dtype must be torch.uint8 or a float dtype, got {dtype}.")
        if dtype == torch.uint8 and model.levels is None:
            raise ValueError("dtype=torch.uint8 needs an image model with levels; use a float.")
        self.seed = int(seed)
        self.temperature = check_temperature(temperature)
        self.dtype = dtype
        self.transform = transform

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def _check_index(self, index: int) -> int:
        n, index = len(self), int(index)
        index = index + n if index < 0 else index
        if not 0 <= index < n:
            raise IndexError(f"index {index} is out of range for a SyntheticDataset of {n}.")
        return index

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, int]]:
        """Samples for many indices in one flow pass: a list of ``(image, label)``."""
        indices = [self._check_index(i) for i in indices]
        if not indices:
            return []
        model = self.model
        seeds = [derive_seed(self.seed, i) for i in indices]
        noise = [
            torch.randn(model.event_dim, generator=torch.Generator().manual_seed(s)) for s in seeds
        ]
        y = self.labels[indices]
        with eval_mode(model):
            x = model.decode(
                (torch.stack(noise) * self.temperature).to(model.device), y.to(model.device)
            )
        x = from_codes(to_codes(x.cpu(), model.levels), model.levels, self.dtype)
        if self.transform is not None:
            x = [self.transform(xi) for xi in x]
        return list(zip(x, y.tolist(), strict=True))

    def __getitem__(self, index: int) -> tuple[Any, int]:
        """``(image, label)``: float ``[*event_shape]`` in ``[0, 1]`` (or uint8), an int."""
        return self.__getitems__([index])[0]


def mix_datasets(
    real: Dataset, synthetic: Dataset, ratio: float = 1.0, seed: int = 0
) -> ConcatDataset:
    """``ConcatDataset([real, Subset(synthetic, picked)])``: the map-style dataset ``real`` of
    ``(image, label)`` plus ``round(ratio * len(real))`` samples of ``synthetic`` (e.g. a
    :class:`SyntheticDataset`), at indices ``>= len(real)``.

    The samples are a random subset of ``synthetic`` picked by ``seed`` (with repeats only when
    more are asked for than it holds). Shuffle with the DataLoader; items of both datasets must
    collate together (e.g. ``SyntheticDataset(dtype=...)`` matching the real images' dtype).
    """
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio < 0:
        raise ValueError(f"ratio must be a number >= 0 (synthetic per real sample), got {ratio!r}.")
    for name, ds in (("real", real), ("synthetic", synthetic)):
        if not hasattr(ds, "__getitem__") or not hasattr(ds, "__len__"):
            raise TypeError(
                f"{name} must be a map-style dataset (with __getitem__ and __len__), got "
                f"{type(ds).__name__}; for iterable datasets interleave the streams instead."
            )
    n_syn = round(ratio * len(real))
    if n_syn and len(synthetic) == 0:
        raise ValueError(f"synthetic is empty but ratio={ratio} asks for {n_syn} samples.")
    g = torch.Generator().manual_seed(derive_seed(seed))
    picks = [
        torch.randperm(len(synthetic), generator=g)
        for _ in range(-(-n_syn // max(len(synthetic), 1)))
    ]
    picked = torch.cat(picks)[:n_syn].tolist() if picks else []
    part: Dataset = Subset(synthetic, picked)
    if len(real) and picked:
        part = _collating_like(real[0], part)
    return ConcatDataset([real, part])


class _TensorLabels(Dataset):
    """``(image, label)`` items of ``base`` with the label as a 0-d tensor of ``dtype`` (what
    ``TensorDataset`` gives), so that they collate with such a dataset's items."""

    def __init__(self, base: Dataset, dtype: torch.dtype):
        self.base, self.dtype = base, dtype

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[Any, Tensor]:
        image, label = self.base[index]
        return image, torch.as_tensor(label, dtype=self.dtype)


def _collating_like(real_item: Any, synthetic: Dataset) -> Dataset:
    """``synthetic`` adapted to collate with ``real_item``'s kind of item: tensor labels where
    the real labels are tensors; an error naming the fix where the images' dtypes differ."""
    if not (isinstance(real_item, (tuple, list)) and len(real_item) == 2):
        return synthetic
    (image, label), (real_image, real_label) = synthetic[0], real_item
    if (
        isinstance(real_image, Tensor)
        and isinstance(image, Tensor)
        and real_image.dtype != image.dtype
    ):
        raise TypeError(
            f"real images are {real_image.dtype} but synthetic ones {image.dtype}; they "
            f"would not collate: build the synthetic set with dtype={real_image.dtype}."
        )
    if isinstance(real_label, Tensor) and not isinstance(label, Tensor):
        return _TensorLabels(synthetic, real_label.dtype)
    return synthetic
