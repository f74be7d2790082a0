"""Rational-quadratic spline coupling for feature vectors (neural spline flows).

A monotonic rational-quadratic spline on ``[-bound, bound]`` with ``bins`` bins maps each
transformed feature; outside the interval it is the identity (linear tails with slope 1), so the
map is a bijection of the whole real line. The spline's knots and slopes come from a small
network that sees the untouched half of the features and the class embedding.

References:
    Neural Spline Flows (Durkan, Bekasov, Murray & Papamakarios, 2019)
    https://arxiv.org/abs/1906.04032

    Piecewise rational quadratic interpolation to monotonic data (Gregory & Delbourgo, 1982)
    https://doi.org/10.1093/imanum/2.2.123
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowaug.flows.base import FlowLayer
from flowaug.flows.dropout import Dropout

__all__ = ["rational_quadratic_spline", "ConditionerMLP", "SplineCoupling"]

_MIN_WIDTH = 1e-3
_MIN_HEIGHT = 1e-3
_MIN_SLOPE = 1e-3
# softplus(0 + _SLOPE_SHIFT) + _MIN_SLOPE == 1: a zero network output means slope 1 everywhere
_SLOPE_SHIFT = math.log(math.expm1(1.0 - _MIN_SLOPE))


def _softplus(x: Tensor) -> Tensor:
    """``log(1 + e^x)`` as ``relu(x) + log(1 + e^-|x|)``, the relu written ``(x + |x|) / 2`` so
    the gradient at 0 is softplus' 1/2; within 1e-6 of ``F.softplus``, whose CPU kernel goes
    through an unvectorized ``log1p`` (3.5x slower forward, 1.5x with the backward)."""
    a = x.abs()
    return 0.5 * (x + a) + torch.log(1 + torch.exp(-a))


def _softmax_last(raw: Tensor) -> Tensor:
    """Softmax over the last dim; torch's CPU kernel is about 3x slower for a handful of bins."""
    e = (raw - raw.amax(dim=-1, keepdim=True)).exp()
    return e * e.sum(dim=-1, keepdim=True).reciprocal()


def _knots(raw: Tensor, bound: float, minimum: float) -> tuple[Tensor, Tensor]:
    """Unnormalized bin sizes ``[..., K]`` -> knots ``[..., K + 1]`` and bin sizes ``[..., K]``.

    The knots span ``[-bound, bound]`` exactly; every bin is at least ``minimum * 2 * bound``.
    """
    bins = raw.shape[-1]
    sizes = minimum + (1 - minimum * bins) * _softmax_last(raw)
    inner = torch.cumsum(sizes, dim=-1)[..., :-1] * (2 * bound) - bound
    # the ends are set, not summed, so rounding never leaves a gap at +-bound
    end = torch.full_like(raw[..., :1], bound)
    knots = torch.cat([-end, inner, end], dim=-1)
    return knots, knots[..., 1:] - knots[..., :-1]


def _gather(t: Tensor, idx: Tensor) -> Tensor:
    return t.gather(-1, idx[..., None])[..., 0]


def _check_bins(widths: Tensor, heights: Tensor, slopes: Tensor) -> None:
    if widths.shape[-1] < 1 or heights.shape[-1] != widths.shape[-1]:
        raise ValueError(
            f"widths and heights need the same number of bins >= 1, got {widths.shape[-1]} "
            f"and {heights.shape[-1]}."
        )
    if slopes.shape[-1] != widths.shape[-1] - 1:
        raise ValueError(
            f"slopes needs bins - 1 = {widths.shape[-1] - 1} entries, got {slopes.shape[-1]}."
        )


def rational_quadratic_spline(
    x: Tensor,
    widths: Tensor,
    heights: Tensor,
    slopes: Tensor,
    bound: float = 4.0,
    inverse: bool = False,
) -> tuple[Tensor, Tensor]:
    """Elementwise monotonic rational-quadratic spline with identity tails.

    Args:
        x: float tensor ``[...]`` of inputs (outputs of the forward map when ``inverse``).
        widths: unnormalized bin widths ``[..., K]`` (softmax-normalized here).
        heights: unnormalized bin heights ``[..., K]``.
        slopes: unconstrained interior knot slopes ``[..., K - 1]``; ``0`` means slope 1, so
            all-zero parameters give the identity.
        bound: the spline acts on ``[-bound, bound]``; the identity outside.
        inverse: evaluate the inverse map instead.

    Returns:
        ``(y, logabsdet)``, both of ``x``'s shape: the mapped values and ``log|dy/dx|`` of the
        map that was evaluated (the forward map's inverse's log-det when ``inverse``).
    """
    _check_bins(widths, heights, slopes)
    inside = (x >= -bound) & (x <= bound)
    xc = x.clamp(-bound, bound)
    kx, w = _knots(widths, bound, _MIN_WIDTH)
    ky, h = _knots(heights, bound, _MIN_HEIGHT)
    d = _MIN_SLOPE + _softplus(slopes + _SLOPE_SHIFT)
    ones = torch.ones_like(widths[..., :1])
    d = torch.cat([ones, d, ones], dim=-1)  # slope 1 at the ends: smooth join with the tails

    knots = ky if inverse else kx
    idx = (xc[..., None] >= knots[..., 1:-1]).sum(-1)
    x_k, y_k, w_k, h_k = _gather(kx, idx), _gather(ky, idx), _gather(w, idx), _gather(h, idx)
    d_k, d_k1 = _gather(d, idx), _gather(d, idx + 1)
    s_k = h_k / w_k
    curvature = d_k1 + d_k - 2 * s_k
    if inverse:
        dy = xc - y_k
        a = h_k * (s_k - d_k) + dy * curvature
        b = h_k * d_k - dy * curvature
        c = -s_k * dy
        disc = (b.pow(2) - 4 * a * c).clamp_min(0)
        xi = (2 * c) / (-b - disc.sqrt())
        xi = xi.clamp(0, 1)
        out = x_k + xi * w_k
    else:
        xi = ((xc - x_k) / w_k).clamp(0, 1)
    both = xi * (1 - xi)
    denom = s_k + curvature * both
    if not inverse:
        out = y_k + h_k * (s_k * xi.pow(2) + d_k * both) / denom
    deriv = s_k.pow(2) * (d_k1 * xi.pow(2) + 2 * s_k * both + d_k * (1 - xi).pow(2))
    logdet = torch.log(deriv) - 2 * torch.log(denom)
    if inverse:
        logdet = -logdet
    out = torch.where(inside, out, x)
    logdet = torch.where(inside, logdet, torch.zeros_like(logdet))
    return out, logdet


class ConditionerMLP(nn.Module):
    """``[x, cond] -> params``: the network inside a coupling, last layer zero-initialized.

    Works with an empty input (``in_features + cond_dim == 0``): the output is then a learned
    parameter vector, which makes a one-feature "coupling" an elementwise learned spline.

    Arguments:
        in_features: features the network sees (may be 0).
        out_features: parameters it predicts.
        hidden: hidden width.
        cond_dim: size of the class embedding (0 for none).
        dropout: dropout on the hidden features.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: int,
        cond_dim: int = 0,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.in_features = in_features + cond_dim
        if self.in_features == 0:
            self.net = None
            self.bias = nn.Parameter(torch.zeros(out_features))
        else:
            last = nn.Linear(hidden, out_features)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.net = nn.Sequential(
                nn.Linear(self.in_features, hidden),
                nn.ReLU(),
                nn.Linear(hidden, hidden),
                nn.ReLU(),
                Dropout(dropout),
                last,
            )

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """``x [B, F]`` (``F`` may be 0), ``cond [B, E]`` or None -> ``[B, out_features]``."""
        if self.net is None:
            return self.bias.expand(x.shape[0], -1)
        inp = x if cond is None else torch.cat([x, cond.to(x.dtype)], dim=1)
        if inp.shape[1] != self.in_features:
            raise ValueError(
                f"ConditionerMLP expected {self.in_features} input features (data + cond), got "
                f"{inp.shape[1]}; pass the class embedding it was built with."
            )
        return self.net(inp)


class SplineCouplingBase(FlowLayer):
    """Shared mechanics of the spline couplings: the first ``split_at`` entries of dim 1 pass
    unchanged and, through ``self.net(x_a, cond)``, set ``3K - 1`` spline parameters for every
    other entry (per pixel for images). Subclasses build ``self.net``.
    """

    def _setup(self, size: int, bins: int, bound: float) -> int:
        """Check ``bins`` and ``bound``, split ``size`` entries; returns the net's output size."""
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}.")
        if not bound > 0:
            raise ValueError(f"bound must be > 0, got {bound}.")
        self.split_at = size // 2
        self.transformed = size - self.split_at
        self.bins, self.bound = bins, float(bound)
        return self.transformed * (3 * bins - 1)

    def _spline(self, x_a: Tensor, x_b: Tensor, cond: Tensor | None, inverse: bool):
        params = self.net(x_a, cond)
        params = params.view(x_b.shape[0], self.transformed, 3 * self.bins - 1, *x_b.shape[2:])
        # contiguous: softmax and gather along a strided last dim are several times slower
        params = params.movedim(2, -1).contiguous()  # [B, D_b, (H, W,) 3K - 1]
        k = self.bins
        widths, heights, slopes = params[..., :k], params[..., k : 2 * k], params[..., 2 * k :]
        return rational_quadratic_spline(x_b, widths, heights, slopes, self.bound, inverse)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``x [B, D, ...] -> (z [B, D, ...], logdet [B])``."""
        x_a, x_b = x[:, : self.split_at], x[:, self.split_at :]
        z_b, logabsdet = self._spline(x_a, x_b, cond, inverse=False)
        return torch.cat([x_a, z_b], dim=1), logabsdet.flatten(1).sum(1)

    def inverse(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        """``z [B, D, ...] -> x [B, D, ...]``."""
        z_a, z_b = z[:, : self.split_at], z[:, self.split_at :]
        x_b, _ = self._spline(z_a, z_b, cond, inverse=True)
        return torch.cat([z_a, x_b], dim=1)

    def extra_repr(self) -> str:
        return f"split_at={self.split_at}, bins={self.bins}, bound={self.bound}"


class SplineCoupling(SplineCouplingBase):
    """Rational-quadratic spline coupling for vectors ``[B, D]``, conditioned on a class embedding.

    The first ``D // 2`` features pass unchanged and, with the class embedding, set a spline for
    each of the others. With ``D == 1`` nothing is passed through: the single feature gets an
    elementwise spline set by the class embedding alone (a class-conditional 1-D transform).
    The network's last layer starts at zero, so the layer starts as the exact identity.

    Arguments:
        features: number of features ``D >= 1``.
        hidden: width of the conditioner network.
        cond_dim: size of the class embedding (0 for unconditional).
        bins: number of spline bins ``K``.
        bound: the spline acts on ``[-bound, bound]``, the identity outside.
        dropout: dropout inside the conditioner network.

    Example:
        >>> layer = SplineCoupling(4, hidden=16, cond_dim=3)
        >>> x, c = torch.randn(5, 4), torch.randn(5, 3)
        >>> z, logdet = layer(x, c)
        >>> z.shape, logdet.shape
        (torch.Size([5, 4]), torch.Size([5]))
        >>> torch.allclose(layer.inverse(z, c), x, atol=1e-5)
        True
    """

    def __init__(
        self,
        features: int,
        hidden: int = 64,
        cond_dim: int = 0,
        bins: int = 8,
        bound: float = 4.0,
        dropout: float = 0.0,
    ):
        super().__init__()
        if features < 1:
            raise ValueError(f"SplineCoupling needs features >= 1, got {features}.")
        self.features = features
        out = self._setup(features, bins, bound)
        self.net = ConditionerMLP(self.split_at, out, hidden, cond_dim, dropout)
