"""Coupling layers for images and vectors: the class-conditioned network, the affine coupling
of Real NVP / Glow and the rational-quadratic spline coupling.

References:
    Density estimation using Real NVP (Dinh et al., 2017) https://arxiv.org/abs/1605.08803

    Neural Spline Flows (Durkan et al., 2019) https://arxiv.org/abs/1906.04032
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowaug.flows.base import FlowLayer
from flowaug.flows.conv import NarrowConv, PointwiseConv
from flowaug.flows.dropout import Dropout
from flowaug.flows.spline import SplineCouplingBase

__all__ = ["AffineCoupling", "CouplingNet", "SplineImageCoupling"]


class CouplingNet(nn.Module):
    """The network inside a coupling or split layer, conditioned on a class embedding.

    Images: ``conv3x3 -> (+ cond bias) -> ReLU -> conv1x1 -> ReLU -> dropout -> conv3x3``;
    vectors: the same with linear layers. The last layer starts at zero so every coupling starts
    as the identity, which keeps deep flows stable at initialization.

    Arguments:
        in_channels: channels seen by the network.
        out_channels: channels it predicts.
        hidden: width of the hidden layers.
        cond_dim: size of the conditioning vector (0 for none).
        spatial: ``True`` for images ``[B, C, H, W]``, ``False`` for vectors ``[B, C]``.
        dropout: dropout probability on the hidden features (regularizes small-data fits).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden: int,
        cond_dim: int = 0,
        spatial: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(
                f"hidden (the coupling networks' width) must be an int >= 1, got {hidden!r}."
            )
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not 0 <= dropout < 1
        ):
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}.")
        self.spatial = spatial
        if spatial:
            self.inp = nn.Conv2d(in_channels, hidden, 3, padding=1)
            self.mid = PointwiseConv(hidden, hidden)
            self.out = NarrowConv(hidden, out_channels, 3)
        else:
            self.inp = nn.Linear(in_channels, hidden)
            self.mid = nn.Linear(hidden, hidden)
            self.out = nn.Linear(hidden, out_channels)
        self.cond = nn.Linear(cond_dim, hidden) if cond_dim > 0 else None
        self.dropout = Dropout(dropout)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        h = self.inp(x)
        if self.cond is not None and cond is not None:
            bias = self.cond(cond)
            h = h + (bias[:, :, None, None] if self.spatial else bias)
        h = F.relu(h)
        h = self.dropout(F.relu(self.mid(h)))
        return self.out(h)


class AffineCoupling(FlowLayer):
    """Affine coupling: the first half of the channels sets a scale and shift for the second.

    ``z_b = x_b * exp(log_s) + t`` with ``(raw, t) = net(x_a, cond)`` and
    ``log_s = clamp * tanh(raw / clamp)``: the scale is bounded in ``[e^-clamp, e^clamp]``, so
    training cannot blow up through it. ``logdet = sum(log_s)``.

    Arguments:
        channels: channels ``C >= 2`` of inputs ``[B, C, H, W]`` (or ``[B, C]``).
        hidden: width of the coupling network.
        cond_dim: size of the class embedding (0 for unconditional).
        spatial: images (``True``) or vectors (``False``).
        dropout: dropout inside the coupling network.
        clamp: bound on ``|log_s|``.
    """

    def __init__(
        self,
        channels: int,
        hidden: int = 64,
        cond_dim: int = 0,
        spatial: bool = True,
        dropout: float = 0.0,
        clamp: float = 2.0,
    ):
        super().__init__()
        if channels < 2:
            raise ValueError(f"AffineCoupling needs channels >= 2 to split, got {channels}.")
        self.split_at = channels // 2
        self.clamp = clamp
        out = 2 * (channels - self.split_at)
        self.net = CouplingNet(self.split_at, out, hidden, cond_dim, spatial, dropout)

    def _scale_shift(self, x_a: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        raw, shift = self.net(x_a, cond).chunk(2, dim=1)
        return self.clamp * torch.tanh(raw / self.clamp), shift

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x_a, x_b = x[:, : self.split_at], x[:, self.split_at :]
        log_s, shift = self._scale_shift(x_a, cond)
        z_b = x_b * log_s.exp() + shift
        return torch.cat([x_a, z_b], dim=1), log_s.flatten(1).sum(1)

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        z_a, z_b = z[:, : self.split_at], z[:, self.split_at :]
        log_s, shift = self._scale_shift(z_a, cond)
        return torch.cat([z_a, (z_b - shift) * (-log_s).exp()], dim=1)

    def extra_repr(self) -> str:
        return f"split_at={self.split_at}, clamp={self.clamp}"


class SplineImageCoupling(SplineCouplingBase):
    """Rational-quadratic spline coupling: the first half of the channels sets, per pixel, a
    monotonic spline on ``[-bound, bound]`` (identity outside) for each channel of the second.

    More flexible than an affine coupling per layer (Durkan et al., 2019,
    https://arxiv.org/abs/1906.04032); a zero network output is the identity.

    Arguments:
        channels: channels ``C >= 2`` of inputs ``[B, C, H, W]`` (or ``[B, C]``).
        hidden: width of the coupling network.
        cond_dim: size of the class embedding (0 for unconditional).
        spatial: images (``True``) or vectors (``False``).
        dropout: dropout inside the coupling network.
        bins: spline bins ``K``.
        bound: half-width of the spline's interval.
    """

    def __init__(
        self,
        channels: int,
        hidden: int = 64,
        cond_dim: int = 0,
        spatial: bool = True,
        dropout: float = 0.0,
        bins: int = 8,
        bound: float = 4.0,
    ):
        super().__init__()
        if channels < 2:
            raise ValueError(f"SplineImageCoupling needs channels >= 2 to split, got {channels}.")
        out = self._setup(channels, bins, bound)
        self.net = CouplingNet(self.split_at, out, hidden, cond_dim, spatial, dropout)
