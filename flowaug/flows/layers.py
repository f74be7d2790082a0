"""Invertible layers: ActNorm, LU 1x1 convolution, affine coupling, squeeze, split, priors.

Every layer follows :class:`~flowaug.flows.base.FlowLayer`: ``forward(x, cond) -> (z, logdet)``
and ``inverse(z, cond) -> x``. Layers accept images ``[B, C, H, W]`` and, where it makes sense,
feature vectors ``[B, C]`` (the 1x1 convolution is then a linear map), so the tabular flow
reuses them.

References:
    Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018)
    https://arxiv.org/abs/1807.03039

    Density estimation using Real NVP (Dinh et al., 2017) https://arxiv.org/abs/1605.08803
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowaug.flows.base import FlowLayer
from flowaug.flows.conv import channel_mix
from flowaug.flows.coupling import AffineCoupling, CouplingNet, SplineImageCoupling

__all__ = [
    "ActNorm",
    "InvConv1x1",
    "AffineCoupling",
    "SplineImageCoupling",
    "CouplingNet",
    "Squeeze",
    "Split",
    "GaussianPrior",
    "LogitTransform",
    "FlowStep",
]


def _spatial_size(x: Tensor) -> int:
    """Positions a per-channel parameter applies at: ``H*W`` for images, 1 for vectors."""
    return math.prod(x.shape[2:]) if x.dim() > 2 else 1


def _per_channel(p: Tensor, x: Tensor) -> Tensor:
    """Reshape a ``[C]`` parameter to broadcast against ``x`` of shape ``[B, C, ...]``."""
    return p.view(1, -1, *([1] * (x.dim() - 2)))


class ActNorm(FlowLayer):
    """Per-channel affine normalization, ``z = (x + loc) * exp(log_scale)``.

    Data-dependent initialization: the first forward pass in training mode (or
    :meth:`ConditionalFlow.initialize`) sets ``loc`` and ``log_scale`` so the batch's output has
    zero mean and unit variance per channel. The ``initialized`` buffer is saved with the
    weights, so a loaded model never re-initializes.

    Arguments:
        channels: number of channels ``C`` of inputs ``[B, C, H, W]`` or ``[B, C]``.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        dims = [0, *range(2, x.dim())]
        mean = x.mean(dim=dims)
        std = x.std(dim=dims, unbiased=False) if x.shape[0] * _spatial_size(x) > 1 else None
        self.loc.copy_(-mean)
        if std is not None:
            self.log_scale.copy_(-torch.log(std.clamp_min(1e-3)))
        self.initialized.fill_(True)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``x [B, C, ...] -> (z [B, C, ...], logdet [B])``."""
        if self.training and not bool(self.initialized):
            self._initialize(x)
        z = (x + _per_channel(self.loc, x)) * _per_channel(self.log_scale.exp(), x)
        logdet = self.log_scale.sum() * _spatial_size(x)
        return z, logdet.expand(x.shape[0])

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return z * _per_channel((-self.log_scale).exp(), z) - _per_channel(self.loc, z)

    def extra_repr(self) -> str:
        return f"channels={self.loc.numel()}"


class InvConv1x1(FlowLayer):
    """Invertible 1x1 convolution (a learned channel mixing) in LU form.

    ``W = P L (U + diag(sign * exp(log_s)))`` with ``P`` a fixed permutation, ``L`` unit lower
    triangular and ``U`` strictly upper triangular, so ``log|det W| = sum(log_s)`` costs O(C)
    and the weight can never become singular. Initialized at a random rotation.

    Arguments:
        channels: number of channels ``C``; inputs ``[B, C, H, W]`` or ``[B, C]``.
    """

    def __init__(self, channels: int):
        super().__init__()
        w0 = torch.linalg.qr(torch.randn(channels, channels, dtype=torch.float64))[0]
        p, lower, upper = torch.linalg.lu(w0)
        diag = torch.diagonal(upper)
        self.register_buffer("perm", p.float())
        self.register_buffer("sign_s", torch.sign(diag).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.lower = nn.Parameter(lower.float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(diag.abs().log().float())

    def weight(self, dtype: torch.dtype | None = None) -> Tensor:
        """The ``[C, C]`` mixing matrix (in ``dtype`` if given, e.g. float64 for exact checks)."""
        dtype = dtype or self.lower.dtype
        eye = torch.eye(self.lower.shape[0], dtype=dtype, device=self.lower.device)
        mask = self.lower_mask.to(dtype)
        lower = self.lower.to(dtype) * mask + eye
        upper = self.upper.to(dtype) * mask.T + torch.diag(
            self.sign_s.to(dtype) * self.log_s.to(dtype).exp()
        )
        return self.perm.to(dtype) @ lower @ upper

    @staticmethod
    def _mix(x: Tensor, w: Tensor) -> Tensor:
        if x.dim() == 2:
            return x @ w.T
        return channel_mix(x, w)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``x [B, C, ...] -> (W x, logdet [B])``."""
        z = self._mix(x, self.weight(x.dtype))
        logdet = self.log_s.sum().to(x.dtype) * _spatial_size(x)
        return z, logdet.expand(x.shape[0])

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        # invert in float64: cheap at these sizes and keeps the round trip exact to ~1e-6
        w_inv = torch.linalg.inv(self.weight(torch.float64)).to(z.dtype)
        return self._mix(z, w_inv)

    def extra_repr(self) -> str:
        return f"channels={self.lower.shape[0]}"


class Squeeze(FlowLayer):
    """Space-to-depth: ``[B, C, H, W] -> [B, 4C, H/2, W/2]``; volume preserving (logdet 0)."""

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"Squeeze needs even height and width, got {h}x{w}.")
        z = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return z.reshape(b, 4 * c, h // 2, w // 2), x.new_zeros(b)

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        b, c4, h, w = z.shape
        c = c4 // 4
        x = z.view(b, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(b, c, 2 * h, 2 * w)


class Split(FlowLayer):
    """Factor out half of the channels under a learned conditional Gaussian prior.

    ``z = [x_a, (x_b - mu) * exp(-log_sigma)]`` with ``(mu, log_sigma) = prior(x_a, cond)``: the
    second half of the output is standard normal under the model, and the caller keeps only the
    first half for the next scale. ``logdet = -sum(log_sigma)``.

    Arguments:
        channels: channels ``C >= 2`` of the input.
        hidden: width of the prior network.
        cond_dim: size of the class embedding (0 for unconditional).
        spatial: images or vectors.
    """

    def __init__(self, channels: int, hidden: int = 64, cond_dim: int = 0, spatial: bool = True):
        super().__init__()
        if channels < 2:
            raise ValueError(f"Split needs channels >= 2, got {channels}.")
        self.keep = channels // 2
        self.prior = CouplingNet(self.keep, 2 * (channels - self.keep), hidden, cond_dim, spatial)

    def _mu_log_sigma(self, x_a: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        mu, raw = self.prior(x_a, cond).chunk(2, dim=1)
        return mu, 3.0 * torch.tanh(raw / 3.0)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x_a, x_b = x[:, : self.keep], x[:, self.keep :]
        mu, log_sigma = self._mu_log_sigma(x_a, cond)
        eps = (x_b - mu) * (-log_sigma).exp()
        return torch.cat([x_a, eps], dim=1), -log_sigma.flatten(1).sum(1)

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        z_a, eps = z[:, : self.keep], z[:, self.keep :]
        mu, log_sigma = self._mu_log_sigma(z_a, cond)
        return torch.cat([z_a, mu + eps * log_sigma.exp()], dim=1)


class GaussianPrior(FlowLayer):
    """Class-dependent diagonal Gaussian, as a bijection to standard normal noise.

    ``eps = (x - mu_y) * exp(-log_sigma_y)``; ``mu_y, log_sigma_y`` are a learned base (shared by
    all classes) plus a zero-initialized linear map of the class embedding.
    ``logdet = -sum(log_sigma_y)``.

    Arguments:
        shape: shape of one input without the batch dimension, e.g. ``(8, 2, 2)``.
        cond_dim: size of the class embedding (0 for unconditional).
    """

    def __init__(self, shape: tuple[int, ...], cond_dim: int = 0):
        super().__init__()
        self.shape = tuple(shape)
        dim = math.prod(self.shape)
        self.base = nn.Parameter(torch.zeros(2 * dim))
        self.cond = nn.Linear(cond_dim, 2 * dim) if cond_dim > 0 else None
        if self.cond is not None:
            nn.init.zeros_(self.cond.weight)
            nn.init.zeros_(self.cond.bias)

    def _mu_log_sigma(self, batch: int, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        params = self.base.expand(batch, -1)
        if self.cond is not None and cond is not None:
            params = params + self.cond(cond)
        mu, raw = params.chunk(2, dim=1)
        return mu.view(batch, *self.shape), (3.0 * torch.tanh(raw / 3.0)).view(batch, *self.shape)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mu, log_sigma = self._mu_log_sigma(x.shape[0], cond)
        return (x - mu) * (-log_sigma).exp(), -log_sigma.flatten(1).sum(1)

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        mu, log_sigma = self._mu_log_sigma(z.shape[0], cond)
        return mu + z * log_sigma.exp()


class LogitTransform(FlowLayer):
    """Map data in ``[0, 1]`` to the real line: ``z = logit(alpha + (1 - 2 alpha) x)``.

    Part of the model, so its log-det is counted in ``log_prob`` and bits/dim stay in data space.
    ``alpha`` keeps the logit finite at 0 and 1.

    Arguments:
        alpha: margin in ``(0, 0.5)``; RealNVP uses 0.05.
    """

    def __init__(self, alpha: float = 0.05):
        super().__init__()
        if not 0 < alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5), got {alpha}.")
        self.alpha = alpha

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        u = self.alpha + (1 - 2 * self.alpha) * x
        z = torch.log(u) - torch.log1p(-u)
        logdet = math.log(1 - 2 * self.alpha) - torch.log(u) - torch.log1p(-u)
        return z, logdet.flatten(1).sum(1)

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return ((torch.sigmoid(z) - self.alpha) / (1 - 2 * self.alpha)).clamp(0.0, 1.0)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class FlowStep(FlowLayer):
    """One Glow step: ActNorm -> invertible 1x1 conv -> affine or spline coupling.

    Arguments:
        channels: channels of the input; the rest as in :class:`AffineCoupling`.
        coupling: ``"affine"`` (:class:`AffineCoupling`) or ``"spline"``
            (:class:`SplineImageCoupling` with ``bins`` bins).
    """

    def __init__(
        self,
        channels: int,
        hidden: int = 64,
        cond_dim: int = 0,
        spatial: bool = True,
        dropout: float = 0.0,
        clamp: float = 2.0,
        coupling: str = "affine",
        bins: int = 8,
    ):
        super().__init__()
        if coupling == "affine":
            couple = AffineCoupling(channels, hidden, cond_dim, spatial, dropout, clamp)
        elif coupling == "spline":
            couple = SplineImageCoupling(channels, hidden, cond_dim, spatial, dropout, bins)
        else:
            raise ValueError(f"coupling must be 'affine' or 'spline', got {coupling!r}.")
        self.layers = nn.ModuleList([ActNorm(channels), InvConv1x1(channels), couple])

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        logdet = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x, cond)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        for layer in reversed(self.layers):
            z = layer.inverse(z, cond)
        return z
