"""The classic 1-D affine flow, done right: the teaching example."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["AffineFlow1D"]


class AffineFlow1D(nn.Module):
    """A chain of 1-D affine maps ``x -> exp(log_scale_k) * x + shift_k`` on a standard normal.

    The scale is ``exp(log_scale)``, positive by construction, so every map is invertible and
    ``log|dx/dz| = sum(log_scale)`` needs no absolute value. A chain of affine maps is itself
    affine, so the model is a Gaussian ``N(shift_total, exp(log_scale_total)^2)``: exactly what
    the maximum-likelihood fit must recover (the data's mean and standard deviation).

    Arguments:
        num_layers: number of affine maps in the chain.

    Example:
        >>> flow = AffineFlow1D(num_layers=2)
        >>> x = torch.tensor([0.5, -1.0])
        >>> z, logdet = flow.forward(x)
        >>> torch.allclose(flow.inverse(z), x)
        True
        >>> flow.log_prob(x).shape
        torch.Size([2])
    """

    def __init__(self, num_layers: int = 1):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}.")
        self.log_scale = nn.Parameter(torch.zeros(num_layers))
        self.shift = nn.Parameter(torch.zeros(num_layers))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Data to noise: ``x [N] -> (z [N], log|dz/dx| [N])``, undoing the maps in reverse."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"x must be a float tensor, got {getattr(x, 'dtype', type(x))}.")
        z = x
        for k in reversed(range(self.shift.numel())):
            z = (z - self.shift[k]) * torch.exp(-self.log_scale[k])
        logdet = -self.log_scale.sum().expand_as(x)
        return z, logdet

    def inverse(self, z: Tensor) -> Tensor:
        """Noise to data: ``z [N] -> x [N]``."""
        x = z
        for k in range(self.shift.numel()):
            x = torch.exp(self.log_scale[k]) * x + self.shift[k]
        return x

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x) = log N(z; 0, 1) + log|dz/dx|``, shape ``[N]``, in nats."""
        z, logdet = self.forward(x)
        return -0.5 * (z**2 + math.log(2 * math.pi)) + logdet

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples ``[n]``."""
        z = torch.randn(n, generator=generator, device=self.shift.device, dtype=self.shift.dtype)
        return self.inverse(z)

    @property
    def mean(self) -> Tensor:
        """Mean of the model's Gaussian."""
        return self.inverse(torch.zeros((), dtype=self.shift.dtype, device=self.shift.device))

    @property
    def std(self) -> Tensor:
        """Standard deviation of the model's Gaussian."""
        return self.log_scale.sum().exp()
