"""Bring images to a size a flow takes: ``flowaug fit --image-size N``.

Glow halves height and width at each of its scales, so it needs sizes divisible by
``2 ** num_levels``; folders of odd-sized (or mixed-size) images are resized to ``N x N`` here.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from flowaug.data import FlowData

__all__ = ["resize_images", "check_image_size"]


def check_image_size(size: int, option: str = "--image-size") -> int:
    """``size`` when it is an even int >= 4 (Glow halves it at least once), else ValueError."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 4 or size % 2:
        raise ValueError(
            f"{option} must be an even number of pixels >= 4 (Glow halves the size at each "
            f"scale; a multiple of 8 allows 3 scales), got {size!r}."
        )
    return size


def resize_images(data: FlowData, size: int) -> FlowData:
    """``data`` with its images resized to ``size x size`` (bilinear, antialiased); integer
    images stay integers on the same levels. Data already at that size is returned as is."""
    check_image_size(size)
    if not data.is_image:
        raise ValueError(
            f"--image-size applies to images, but the data holds feature vectors of shape "
            f"{list(data.event_shape)}; drop --image-size."
        )
    if tuple(data.event_shape[1:]) == (size, size):
        return data
    x = data.x.double()
    out = torch.nn.functional.interpolate(
        x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )
    if data.is_discrete:
        top = data.levels - 1
        out = out.round().clamp(0, top).to(data.x.dtype)
    else:
        out = out.clamp(0, 1).to(data.x.dtype)
    return replace(data, x=out)
