"""The coupling networks' convolutions, computed as batched matrix products where torch's CPU
convolution is slow.

oneDNN, which runs torch's CPU convolutions, is slow on two kernels of a small-image flow:
- 1x1 convolutions (the coupling networks' middle layer, the LU 1x1 convolution), which
  :func:`channel_mix` computes with ``baddbmm`` over the batch: forward + backward of the
  64 -> 64 layer at 7x7-16x16 pixels (batch 16) 1.1-1.5x faster, of the 4 -> 4 LU
  convolution 3.4-3.7x;
- the backward of a 3x3 convolution to a few channels (the coupling networks' last layer on
  grayscale images: 64 -> 4 channels at 14x14), which :class:`NarrowConv` computes as one
  matrix product to ``9 x 4`` channels followed by a sum of nine shifted windows: forward +
  backward 1.3-1.8x faster.

Large batches of tiny images (256 samples of 2x2 at 64 channels, as in sampling 8x8 images)
are the exception, where the convolutions stay faster; there, at the sizes where the products
lose, and on every other device, these layers call :func:`torch.nn.functional.conv2d`. Measured by
``benchmarks/cpu_kernels.py`` (``benchmarks/results/cpu_kernels.md``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["NarrowConv", "PointwiseConv", "channel_mix"]

#: below this many pixels per image, oneDNN's 1x1 convolution beats one small matrix product
#: per image once the batch times the output channels reaches :data:`_MANY_ROWS` (2x2 pixels,
#: 64 channels, 256 images: 5x faster; 16 images, 8 channels: 4.6x slower)
_FEW_PIXELS = 16
_MANY_ROWS = 1024
#: :class:`NarrowConv` takes the matrix-product path from this many pixels per image and up to
#: this many output channels (measured: 12x12 and 14x14 with 4 and 8 channels gain, 16x16 with
#: 12 channels and 8x8 lose)
_NARROW_PIXELS = 144
_NARROW_CHANNELS = 8


def channel_mix(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """A 1x1 convolution: ``x [B, C, H, W]``, ``weight [O, C]``, ``bias [O]`` or ``None`` ->
    ``[B, O, H, W]`` (``F.conv2d`` with the kernel ``weight[:, :, None, None]``)."""
    batch, channels, height, width = x.shape
    pixels = height * width
    if x.device.type != "cpu" or (pixels < _FEW_PIXELS and batch * len(weight) >= _MANY_ROWS):
        return F.conv2d(x, weight.view(*weight.shape, 1, 1), bias)
    flat = x.reshape(batch, channels, pixels)
    weights = weight.expand(batch, *weight.shape)
    if bias is None:
        out = torch.bmm(weights, flat)
    else:
        out = torch.baddbmm(bias.view(1, -1, 1).expand(batch, -1, pixels), weights, flat)
    return out.view(batch, weight.shape[0], height, width)


class PointwiseConv(nn.Conv2d):
    """:class:`torch.nn.Conv2d` with a 1x1 kernel (same parameters and state dict), computed by
    :func:`channel_mix`.

    Example:
        >>> layer = PointwiseConv(8, 4)
        >>> x = torch.randn(2, 8, 5, 5)
        >>> torch.allclose(layer(x), nn.functional.conv2d(x, layer.weight, layer.bias), atol=1e-5)
        True
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, in_channels, H, W] -> [B, out_channels, H, W]``."""
        return channel_mix(x, self.weight.view(self.out_channels, self.in_channels), self.bias)


def _windows(kernel: int, height: int, width: int):
    """For each kernel offset ``(a, b)``: the output rows and columns it reaches and the input
    rows and columns it reads there (a 'same'-padded convolution)."""
    pad = kernel // 2
    for a in range(kernel):
        for b in range(kernel):
            di, dj = a - pad, b - pad
            rows = slice(max(0, -di), min(height, height - di))
            cols = slice(max(0, -dj), min(width, width - dj))
            in_rows = slice(rows.start + di, rows.stop + di)
            yield a, b, (rows, cols), (in_rows, slice(cols.start + dj, cols.stop + dj))


class _ShiftedSum(torch.autograd.Function):
    """``z [B, O, K, K, H, W] -> y [B, O, H, W]`` with ``y[..., i, j] = sum_ab z[..., a, b,
    i + a - K // 2, j + b - K // 2]`` (zero outside the image): the second half of a 'same'
    convolution whose first half multiplied each pixel by every kernel tap."""

    @staticmethod
    def forward(ctx, z: Tensor) -> Tensor:
        batch, channels, kernel, _, height, width = z.shape
        y = z.new_zeros(batch, channels, height, width)
        for a, b, (rows, cols), (in_rows, in_cols) in _windows(kernel, height, width):
            y[:, :, rows, cols] += z[:, :, a, b, in_rows, in_cols]
        ctx.kernel = kernel
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        batch, channels, height, width = grad.shape
        kernel = ctx.kernel
        grad_z = grad.new_zeros(batch, channels, kernel, kernel, height, width)
        for a, b, (rows, cols), (in_rows, in_cols) in _windows(kernel, height, width):
            grad_z[:, :, a, b, in_rows, in_cols] = grad[:, :, rows, cols]
        return grad_z


class NarrowConv(nn.Conv2d):
    """:class:`torch.nn.Conv2d` with an odd square kernel, stride 1 and 'same' padding (same
    parameters and state dict) whose CPU training pass, on images of at least 12x12 pixels
    with at most 8 output channels, multiplies every pixel by every kernel tap in one batched
    matrix product and sums the ``kernel**2`` shifted windows: on ``[16, 64, 14, 14] -> 4``
    channels, forward + backward 1.3-1.8x faster than oneDNN. Elsewhere (no gradient, other
    sizes, other devices) it is the convolution.

    Example:
        >>> layer = NarrowConv(16, 4, 3)
        >>> x = torch.randn(2, 16, 12, 12, requires_grad=True)
        >>> torch.allclose(layer(x), nn.functional.conv2d(x, layer.weight, layer.bias, padding=1),
        ...                atol=1e-5)
        True
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        if kernel_size % 2 != 1:
            raise ValueError(f"NarrowConv needs an odd kernel_size, got {kernel_size}.")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def _as_products(self, x: Tensor) -> bool:
        return (
            x.device.type == "cpu"
            and torch.is_grad_enabled()
            and (x.requires_grad or self.weight.requires_grad)
            and self.out_channels <= _NARROW_CHANNELS
            and x.shape[-2] * x.shape[-1] >= _NARROW_PIXELS
        )

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, in_channels, H, W] -> [B, out_channels, H, W]``."""
        if not self._as_products(x):
            return super().forward(x)
        batch, channels, height, width = x.shape
        kernel = self.kernel_size[0]
        # [O, C, K, K] -> [O * K * K, C]: one output row per (channel, tap)
        taps = self.weight.permute(0, 2, 3, 1).reshape(-1, channels)
        per_tap = channel_mix(x, taps)  # [B, O * K * K, H, W]
        out = _ShiftedSum.apply(per_tap.view(batch, self.out_channels, kernel, kernel, height,
                                             width))  # fmt: skip
        return out + self.bias.view(1, -1, 1, 1)
