"""Data to model space and back: dequantization and image conversions.

The flow itself lives on continuous data in ``[0, 1]``. Integer images with ``levels`` intensity
levels are dequantized with uniform noise, ``x = (k + u) / levels``, which makes the flow's
density a lower bound on the probability of the integer image (Theis et al., 2016), and samples
are quantized back with :func:`quantize`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["dequantize", "quantize", "to_unit_float", "from_unit_float", "check_levels"]


def check_levels(levels: Any) -> int:
    """Validate a number of intensity levels (an int >= 2)."""
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 2:
        raise ValueError(
            f"levels must be an integer >= 2 (e.g. 256 for 8-bit images), got {levels!r}."
        )
    return int(levels)


def dequantize(x: Tensor, levels: int = 256, generator: torch.Generator | None = None) -> Tensor:
    """Uniform dequantization of integer data: ``(k + u) / levels`` with ``u ~ U[0, 1)``.

    Args:
        x: integer tensor (any shape) with values in ``[0, levels - 1]``.
        levels: number of levels.
        generator: for the noise (on ``x``'s device).

    Returns:
        float32 tensor of ``x``'s shape in ``[0, 1)``.
    """
    levels = check_levels(levels)
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor of integers, got {type(x).__name__}.")
    if x.is_floating_point() or x.dtype == torch.bool:
        raise TypeError(
            f"x must hold integer levels to dequantize, got dtype {x.dtype}; float images in "
            "[0, 1] are already in model space."
        )
    # compare as Python ints: `x.max() >= 256` overflows in uint8
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= levels):
        raise ValueError(
            f"x has values in [{int(x.min())}, {int(x.max())}], outside [0, {levels - 1}] for "
            f"levels={levels}; pass the right number of levels."
        )
    noise = torch.rand(x.shape, generator=generator, device=x.device)
    return (x.float() + noise) / levels


def quantize(x: Tensor, levels: int = 256) -> Tensor:
    """Inverse of :func:`dequantize` up to the noise: float ``[0, 1]`` -> integer levels (int64)."""
    levels = check_levels(levels)
    return (x * levels).floor().clamp(0, levels - 1).long()


def to_unit_float(image: Tensor) -> Tensor:
    """An image tensor as float32 in ``[0, 1]``: uint8 is divided by 255, floats are kept."""
    if image.dtype == torch.uint8:
        return image.float() / 255.0
    if image.is_floating_point():
        return image.float()
    raise TypeError(f"expected a uint8 or float image tensor, got dtype {image.dtype}.")


def from_unit_float(image: Tensor, like: Tensor) -> Tensor:
    """Inverse of :func:`to_unit_float`: float ``[0, 1]`` back to ``like``'s dtype and range."""
    image = image.clamp(0.0, 1.0)
    if like.dtype == torch.uint8:
        return (image * 255.0).round().to(torch.uint8)
    return image.to(like.dtype)
