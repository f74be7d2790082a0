"""FlowAugment's two algorithms, each a small object: what replaces images ``[n, C, H, W]`` of
classes ``[n]``, in the images' dtype (uint8 ``0..255`` or float ``[0, 1]``) and device.

Each draws its randomness from the transform's :class:`~flowaug.seeding.WorkerRandomState`,
for the images it replaces only.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowaug.flows.base import ConditionalFlow
from flowaug.pixels import from_unit_float, image_to_model, model_to_image, to_unit_float
from flowaug.sampling import SyntheticBank, eval_mode, sample_per_class
from flowaug.seeding import WorkerRandomState

__all__ = ["Latent", "Resample", "coarse_latent_mask", "model_input"]


def model_input(x: Tensor, model: ConditionalFlow) -> Tensor:
    """Images ``[B, C, H, W]`` (uint8 or float ``[0, 1]``) -> model space on the model's device."""
    return image_to_model(to_unit_float(x), model.levels).to(model.device)


def coarse_latent_mask(model: ConditionalFlow, coarse_scales: Any) -> Tensor | None:
    """Bool ``[D]``: the latents of the ``coarse_scales`` coarsest scales (``None``: all)."""
    if coarse_scales is None:
        return None
    sizes = model.latent_scale_sizes
    if (
        isinstance(coarse_scales, bool)
        or not isinstance(coarse_scales, (int, np.integer))
        or not 1 <= coarse_scales <= len(sizes)
    ):
        raise ValueError(
            f"coarse_scales must be an int in [1, {len(sizes)}] (this {type(model).__name__} "
            f"has {len(sizes)} latent scales) or None, got {coarse_scales!r}."
        )
    mask = torch.zeros(sum(sizes), dtype=torch.bool)
    mask[sum(sizes[: len(sizes) - int(coarse_scales)]) :] = True
    return mask


class Strategy:
    """An algorithm: :meth:`batch` replaces images of classes ``labels`` (``None``: an
    unconditional model), :meth:`one` a single image ``[C, H, W]``."""

    #: whether :meth:`batch` reads the images' values; if not, only their dtype and device,
    #: and a caller may hand it any images of the batch instead of gathering the replaced ones
    reads_pixels = True

    def batch(self, x: Tensor, labels: Tensor | None, rng: WorkerRandomState) -> Tensor:
        raise NotImplementedError

    def one(self, x: Tensor, label: int | None, rng: WorkerRandomState) -> Tensor:
        return self.batch(x[None], None if label is None else torch.tensor([label]), rng)[0]


@dataclass(eq=False)
class Resample(Strategy):
    """``mode="resample"``: a synthetic image of the class, from ``bank`` (a tensor copy) or,
    with ``bank=None``, sampled from the flow on every call."""

    model: ConditionalFlow
    bank: SyntheticBank | None
    temperature: float
    filter_threshold: float | None
    reads_pixels = False  # a fresh sample of the class: only x's dtype and device matter

    def one(self, x: Tensor, label: int | None, rng: WorkerRandomState) -> Tensor:
        if self.bank is None:
            return super().one(x, label, rng)
        index = rng.python.randrange(self.bank.n_per_class)
        out = self.bank.get(label, index, torch.uint8 if x.dtype == torch.uint8 else torch.float32)
        return out if out.dtype == x.dtype and out.device == x.device else out.to(x)

    def batch(self, x: Tensor, labels: Tensor | None, rng: WorkerRandomState) -> Tensor:
        if self.bank is not None:
            dtype = torch.uint8 if x.dtype == torch.uint8 else torch.float32
            return self.bank.draw_batch(labels, rng.torch, dtype).to(device=x.device, dtype=x.dtype)
        # classes in the order they first appear, each class's samples in the order drawn
        threshold, counts = self.filter_threshold, Counter(labels.tolist())
        new, y = sample_per_class(
            self.model, counts, self.temperature, filter_threshold=threshold, generator=rng.torch
        )
        pools = {c: list(new[y == c]) for c in counts}
        out = torch.stack([pools[c].pop() for c in labels.tolist()])
        return from_unit_float(model_to_image(out, self.model.levels), x).to(x.device)


@dataclass(eq=False)
class Latent(Strategy):
    """``mode="latent"``: encode, move the latent toward fresh noise, ``eps' = sqrt(1 - s^2)
    eps + s T noise`` (``s = strength``, ``T = temperature``; only where ``mask``: the coarse
    scales), decode under the same class: a variation of *this* image."""

    model: ConditionalFlow
    strength: float
    temperature: float
    mask: Tensor | None

    def batch(self, x: Tensor, labels: Tensor | None, rng: WorkerRandomState) -> Tensor:
        model, s = self.model, self.strength
        with eval_mode(model):
            y = None if labels is None else labels.to(model.device)
            eps = model.encode(model_input(x, model), y)
            noise = torch.randn(eps.shape, generator=rng.torch).to(eps)
            moved = math.sqrt(1.0 - s * s) * eps + (s * self.temperature) * noise
            if self.mask is not None:
                moved = torch.where(self.mask.to(eps.device), moved, eps)
            out = model_to_image(model.decode(moved, y), model.levels)
        return from_unit_float(out, x).to(x.device)
