"""Pixels: dequantization, the intensity grid, and every image <-> tensor conversion.

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

__all__ = [
    "check_levels",
    "dequantize",
    "from_codes",
    "from_unit_float",
    "image_to_chw",
    "image_to_model",
    "model_to_image",
    "pil_to_tensor",
    "quantize",
    "to_8bit",
    "tensor_to_pil",
    "to_codes",
    "to_unit_float",
]


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


def to_codes(x: Tensor, levels: int | None) -> Tensor:
    """Model-space samples -> integer level codes ``k = floor(x * levels)``, clamped.

    Args:
        x: float tensor (any shape) in model space ``[0, 1]``.
        levels: number of intensity levels; ``None`` (continuous data) returns ``x`` as float32.

    Returns:
        uint8 tensor for ``levels <= 256``, int16 up to 32768, else int32; values in
        ``[0, levels - 1]``.
    """
    if levels is None:
        return x.float()
    dtype = torch.uint8 if levels <= 256 else torch.int16 if levels <= 32768 else torch.int32
    return (x * levels).floor_().clamp_(0, levels - 1).to(dtype)


def from_codes(codes: Tensor, levels: int | None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Level codes -> image values on the data grid ``k / (levels - 1)`` in ``[0, 1]``.

    ``dtype=torch.uint8`` gives 8-bit images ``round(k * 255 / (levels - 1))`` in ``0..255``.
    Continuous data (``levels=None``) is returned as is, cast to ``dtype``.
    """
    if levels is None:
        return codes.to(dtype)
    if dtype == torch.uint8:
        if levels == 256:
            return codes.to(torch.uint8, copy=True)
        return (codes.float() * (255.0 / (levels - 1))).round_().to(torch.uint8)
    return codes.to(dtype) * (1.0 / (levels - 1))


def model_to_image(x: Tensor, levels: int | None) -> Tensor:
    """Model-space samples ``[0, 1]`` -> image values on the data grid (float32 ``[0, 1]``)."""
    return from_codes(to_codes(x, levels), levels)


def image_to_model(image01: Tensor, levels: int | None) -> Tensor:
    """Image values in ``[0, 1]`` -> model space: the centre of the matching level's bin.

    The inverse of :func:`model_to_image` for images on the grid: an intensity ``v`` becomes
    ``(round(v * (levels - 1)) + 0.5) / levels``, where the flow was trained (uniform
    dequantization puts level ``k`` in ``[k / levels, (k + 1) / levels)``).
    """
    if levels is None:
        return image01.float()
    k = (image01.float() * (levels - 1)).round_().clamp_(0, levels - 1)
    return (k + 0.5) / levels


def to_8bit(x: Tensor, levels: int | None) -> np.ndarray:
    """Images ``[N, C, H, W]`` as 8-bit pixels (``uint8``, same shape).

    Integer images on ``levels`` intensities map level ``k`` to ``round(k * 255 / (levels -
    1))`` (scikit-learn's 17-level digits become 0, 16, 32, ..., 255); float images in
    ``[0, 1]`` (``levels=None``) to ``round(x * 255)``.
    """
    if x.is_floating_point():
        scaled = x.double().numpy() * 255.0
    else:
        if levels is None:
            raise ValueError("integer images need their levels to be turned into 8-bit pixels.")
        scaled = x.double().numpy() * (255.0 / (check_levels(levels) - 1))
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def image_to_chw(image: Any, where: str) -> Tensor:
    """One image (PIL, ndarray ``[H, W(, C)]``, tensor ``[C, H, W]`` or ``[H, W]``) -> tensor."""
    if hasattr(image, "getbands"):  # PIL image
        return pil_to_tensor(image if image.mode in ("L", "RGB") else image.convert("RGB"))
    if isinstance(image, (list, tuple)):  # array columns of a datasets.Dataset
        image = np.asarray(image)
    if isinstance(image, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(image))
        if t.dim() == 3 and t.shape[-1] in (1, 3, 4) and t.shape[-1] < t.shape[0]:
            t = t.permute(2, 0, 1)  # numpy images are conventionally [H, W, C]
        image = t
    if isinstance(image, Tensor):
        if image.dim() == 2:
            return image[None]
        if image.dim() == 3:
            return image
        raise ValueError(
            f"{where}: expected an image [C, H, W] or [H, W], got {list(image.shape)}."
        )
    raise TypeError(
        f"{where}: expected a PIL image, numpy array or tensor, got {type(image).__name__}."
    )


def pil_to_tensor(image: Any) -> Tensor:
    """A PIL image (mode ``L`` or ``RGB``) -> uint8 tensor ``[C, H, W]`` (a copy)."""
    x = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True))
    return x[None] if x.ndim == 2 else x.permute(2, 0, 1)


def tensor_to_pil(x: Tensor, mode: str) -> Any:
    """A uint8 tensor ``[C, H, W]`` (``C`` 1 for mode ``L``, 3 for ``RGB``) -> PIL image."""
    import PIL.Image

    arr = x[0] if mode == "L" else x.permute(1, 2, 0)
    return PIL.Image.fromarray(arr.contiguous().numpy(), mode=mode)
