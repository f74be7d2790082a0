"""FeatureFlow: a class-conditional normalizing flow for feature vectors ``[B, D]`` (tensors only).

The DataFrame-facing table model, :class:`flowaug.tabular.TabularFlow`, is this flow plus column
encoders; the encoders say which model dimensions are dequantized cells (:func:`redequantize`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from flowaug._checks import check_int
from flowaug.flows.base import ConditionalFlow
from flowaug.flows.checks import check_float_tensor, evaluating
from flowaug.flows.layers import ActNorm, AffineCoupling, GaussianPrior, InvConv1x1
from flowaug.flows.spline import SplineCoupling

__all__ = ["EDGE", "FeatureFlow", "redequantize"]

#: dequantization noise is drawn from ``[EDGE, 1 - EDGE)`` so that float32 round trips never
#: cross a cell border; the cell is still a valid dequantization region (a narrower uniform)
EDGE = 1e-3
_COUPLINGS = ("spline", "affine")


def redequantize(
    x: Tensor,
    groups: Sequence[tuple[int, int, float, float]],
    mean: Tensor,
    std: Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Redraw the dequantization noise of the discrete dimensions of a model-space batch.

    Each discrete value is recovered from its cell (``floor`` or ``argmax``) and placed at a fresh
    uniform position in the same cell; continuous dimensions are untouched.

    Args:
        x: float tensor ``[B, D]`` in model space.
        groups: ``(start, width, low, high)`` per discrete column (width 1: an interval cell
            ``floor(v)`` clipped to ``[low, high]``; wider: a one-hot block decoded by ``argmax``),
            from :meth:`flowaug.tabular.TableEncoder.discrete_groups`.
        mean, std: float tensors ``[D]``, the standardization of model space.
        generator: for the noise (on ``x``'s device).

    Returns:
        float tensor ``[B, D]``.
    """
    if not groups:
        return x
    out = x.clone()
    for start, width, low, high in groups:
        sl = slice(start, start + width)
        block = x[:, sl] * std[sl] + mean[sl]
        if width == 1:
            cell = block.floor().clamp(low, high)
        else:
            cell = torch.zeros_like(block).scatter_(1, block.argmax(1, keepdim=True), 1.0)
        u = torch.rand(cell.shape, generator=generator, device=x.device, dtype=x.dtype)
        out[:, sl] = (cell + EDGE + (1 - 2 * EDGE) * u - mean[sl]) / std[sl]
    return out


def _within_class_whitening(h: Tensor, y: Tensor | None) -> Tensor:
    """``W [D, D]`` (float64) with ``W S W^T = I`` for the shrunk pooled within-class covariance.

    ``S`` is shrunk toward a multiple of the identity with the Ledoit-Wolf weight, which keeps it
    well conditioned when there are fewer rows than dimensions.
    """
    h = h.double()
    resid = h - h.mean(0)
    if y is not None:
        resid = h.clone()
        for c in y.unique():
            resid[y == c] -= h[y == c].mean(0)
    n, d = resid.shape
    if float(resid.pow(2).sum()) <= 1e-12 * max(float(h.pow(2).sum()), 1.0):
        # no within-class spread (one row per class): whiten the pooled spread instead, or
        # nothing at all, rather than blow up by 1/sqrt(0)
        resid = h - h.mean(0)
        if float(resid.pow(2).sum()) <= 1e-24:
            return torch.eye(d, dtype=h.dtype, device=h.device)
    cov = resid.T @ resid / n
    target = cov.trace() / d
    delta = (cov - target * torch.eye(d, dtype=cov.dtype, device=cov.device)).pow(2).sum()
    # sum_k ||r_k r_k^T - S||_F^2 without forming n matrices
    beta = (resid.pow(2).sum(1).pow(2).sum() - n * cov.pow(2).sum()) / n**2
    alpha = 1.0 if delta <= 0 else float((beta / delta).clamp(0, 1))
    shrunk = alpha * target * torch.eye(d, dtype=cov.dtype, device=cov.device)
    shrunk = shrunk + (1 - alpha) * cov
    evals, evecs = torch.linalg.eigh(shrunk)
    evals = evals.clamp_min(1e-6 * float(evals.max().clamp_min(1e-12)))
    return evecs @ torch.diag(evals.rsqrt()) @ evecs.T


def _set_lu_weight(layer: InvConv1x1, weight: Tensor) -> None:
    """Set an :class:`InvConv1x1` so that its matrix is ``weight`` (``[C, C]``, invertible)."""
    perm, lower, upper = torch.linalg.lu(weight.double())
    diag = torch.diagonal(upper)
    layer.perm.copy_(perm)
    layer.lower.copy_(lower)
    layer.upper.copy_(torch.triu(upper, 1))
    layer.sign_s.copy_(torch.sign(diag))
    layer.log_s.copy_(diag.abs().log())


def _step(
    d: int, hidden: int, cond: int, coupling: str, bins: int, bound: float, dropout: float,
    clamp: float,
) -> list[nn.Module]:
    """One flow step on ``[B, d]``: ActNorm, an LU linear map, a coupling (a spline for d = 1),
    built in this order (the order their initializations draw from torch's generator)."""
    step: list[nn.Module] = [ActNorm(d)]
    if d == 1:
        return [*step, SplineCoupling(d, hidden, cond, bins, bound, dropout)]
    step.append(InvConv1x1(d))
    if coupling == "affine":
        return [*step, AffineCoupling(d, hidden, cond, spatial=False, dropout=dropout, clamp=clamp)]
    return [*step, SplineCoupling(d, hidden, cond, bins, bound, dropout)]


class FeatureFlow(ConditionalFlow):
    """Class-conditional flow for feature vectors ``[B, D]``.

    ``depth`` steps of ``ActNorm -> LU linear map -> coupling`` (rational-quadratic spline or
    affine), then a class-conditional diagonal Gaussian; the class enters through a learned
    embedding that conditions every coupling and the prior. With ``num_features == 1`` there is
    nothing to couple with, so every coupling is an elementwise spline set by the class alone
    (whichever ``coupling`` is asked for) and there is no linear map.

    References:
        Neural Spline Flows (Durkan et al., 2019) https://arxiv.org/abs/1906.04032

        Glow (Kingma & Dhariwal, 2018) https://arxiv.org/abs/1807.03039

    Arguments:
        num_features: model-space dimensions ``D``.
        num_classes: number of classes; ``None`` or ``0`` for an unconditional model.
        depth: number of flow steps.
        hidden: width of the coupling networks.
        cond_dim: size of the class embedding.
        coupling: ``"spline"`` (rational-quadratic, default) or ``"affine"``.
        bins: spline bins.
        bound: the splines act on ``[-bound, bound]`` (model space is standardized).
        dropout: dropout inside coupling networks (regularizes small-data fits).
        clamp: bound on affine coupling log-scales.
        noise_std: in training mode, :meth:`prepare_batch` adds Gaussian noise of this standard
            deviation to continuous dimensions (noise regularization for tiny data; 0 = off).
        cells: ``(start, width, low, high)`` of every discrete column (see :func:`redequantize`),
            with ``mean`` and ``std`` (``[D]``) the standardization of model space. They are not
            part of ``config``: the column encoders they come from are (``TabularFlow``).

    Example:
        >>> flow = FeatureFlow(3, num_classes=2, depth=2, hidden=8)
        >>> x, y = torch.randn(10, 3), torch.arange(10) % 2
        >>> flow.initialize(x, y)
        >>> flow.log_prob(x, y).shape, flow.sample(y[:4]).shape
        (torch.Size([10]), torch.Size([4, 3]))
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int | None = None,
        depth: int = 4,
        hidden: int = 64,
        cond_dim: int = 8,
        coupling: str = "spline",
        bins: int = 8,
        bound: float = 4.0,
        dropout: float = 0.0,
        clamp: float = 2.0,
        noise_std: float = 0.0,
        *,
        cells: Sequence[tuple[int, int, float, float]] = (),
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ):
        super().__init__()
        check_int("num_features", num_features, 1)
        num_classes, num_features = int(num_classes or 0), int(num_features)
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = unconditional), got {num_classes}.")
        check_int("depth", depth, 1)
        if coupling not in _COUPLINGS:
            raise ValueError(f"coupling must be one of {_COUPLINGS}, got {coupling!r}.")
        if not noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std!r}.")
        self.event_shape, self.num_classes = (num_features,), num_classes
        self.config = dict(
            num_features=num_features, num_classes=num_classes, depth=int(depth),
            hidden=int(hidden), cond_dim=int(cond_dim), coupling=coupling, bins=int(bins),
            bound=float(bound), dropout=float(dropout), clamp=float(clamp),
            noise_std=float(noise_std),
        )
        self.class_names: list[str] | None = None  # flowaug.io.load assigns it after building
        cond = cond_dim if num_classes else 0
        self.embedding = nn.Embedding(num_classes, cond_dim) if num_classes else None
        self.layers = nn.ModuleList(
            layer
            for _ in range(depth)
            for layer in _step(num_features, hidden, cond, coupling, bins, bound, dropout, clamp)
        )
        self.prior = GaussianPrior((num_features,), cond)
        self._cells = list(cells)
        continuous = np.ones(num_features)
        for start, width, _, _ in self._cells:
            continuous[start : start + width] = 0.0
        mean = np.zeros(num_features) if mean is None else mean
        std = np.ones(num_features) if std is None else std
        # derived from the arguments, so not saved with the weights (persistent=False)
        self.register_buffer("_enc_mean", torch.tensor(mean, dtype=torch.float32), False)
        self.register_buffer("_enc_std", torch.tensor(std, dtype=torch.float32), False)
        self.register_buffer("_continuous", torch.tensor(continuous, dtype=torch.float32), False)

    # --- the flow -------------------------------------------------------------------------------
    def _cond(self, y: Tensor | None) -> Tensor | None:
        return None if self.embedding is None or y is None else self.embedding(y)

    def _forward(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
        cond = self._cond(y)
        logdet = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x, cond)
            logdet = logdet + ld
        eps, ld = self.prior(x, cond)
        return eps, logdet + ld

    def _inverse(self, eps: Tensor, y: Tensor | None) -> Tensor:
        cond = self._cond(y)
        x = self.prior.inverse(eps, cond)
        for layer in reversed(self.layers):
            x = layer.inverse(x, cond)
        return x

    @torch.no_grad()
    def initialize(self, x: Tensor, y: Tensor | None = None) -> None:
        """Data-dependent initialization: the model starts as a fitted per-class Gaussian.

        Layer by layer on the batch: every ActNorm standardizes its input; the last linear map
        whitens the pooled within-class covariance (Ledoit-Wolf shrinkage, so a few rows in
        many dimensions are fine); the prior's mean and scale for each class are set to that
        class's mean and (shrunk) standard deviation. The couplings start as the identity, so
        training begins from a shared-covariance Gaussian per class, the classic small-data
        model, and the flow only has to learn what departs from it. Deterministic in ``(x, y)``.

        Args:
            x: float tensor ``[B, D]`` in model space (``encode_frame`` output).
            y: LongTensor ``[B]`` of classes (``None`` for unconditional models).
        """
        check_float_tensor("x", x, self.event_shape)
        y = self.check_labels(y, x.shape[0])
        norms = self._actnorms()
        with evaluating(self):  # no dropout; ActNorm initializes only in training mode
            for m in norms:
                m.initialized.fill_(False)
                m.train()
            try:
                cond = self._cond(y)
                h = x.to(self.device)
                mixes = [m for m in self.layers if isinstance(m, InvConv1x1)]
                for layer in self.layers:
                    if mixes and layer is mixes[-1]:
                        _set_lu_weight(layer, _within_class_whitening(h, y))
                    h, _ = layer(h, cond)
            finally:
                for m in norms:
                    m.initialized.fill_(True)
        self._init_prior(h, y)

    def _init_prior(self, h: Tensor, y: Tensor | None) -> None:
        """Set ``GaussianPrior`` so that ``mu_c, sigma_c`` match class ``c``'s rows of ``h``."""
        h = h.double()
        classes = list(range(self.num_classes)) if self.num_classes else [None]
        members = [
            torch.ones_like(h[:, 0], dtype=torch.bool) if c is None else y == c for c in classes
        ]
        means = [h[m].mean(0) if m.any() else h.mean(0) for m in members]
        resid = torch.cat([h[m] - mu for m, mu in zip(members, means, strict=True)])
        pooled = (
            resid.pow(2).mean(0).clamp_min(1e-6)
            if resid.shape[0] > len(classes)
            else torch.ones_like(h[0])
        )
        targets = []
        for m, mu in zip(members, means, strict=True):
            n = int(m.sum())
            own = (h[m] - mu).pow(2).mean(0).clamp_min(1e-6) if n > 1 else pooled
            # a few rows give a noisy scale: shrink its log toward the pooled within-class one
            w = n / (n + 2.0)
            log_sigma = (0.5 * (w * own.log() + (1 - w) * pooled.log())).clamp(-2.9, 2.9)
            targets.append(torch.cat([mu, 3.0 * torch.atanh(log_sigma / 3.0)]))
        target = torch.stack(targets)  # [K, 2D] raw prior parameters per class
        prior = self.prior
        if prior.cond is None or self.embedding is None:
            prior.base.copy_(target[0].to(prior.base))
            return
        # base + W e_c = target_c for every class: least squares in (base, W), minimal norm
        emb = self.embedding.weight.double()
        design = torch.cat([torch.ones_like(emb[:, :1]), emb], dim=1)
        solution = torch.linalg.lstsq(design.cpu(), target.cpu(), driver="gelsd").solution
        prior.base.copy_(solution[0].to(prior.base))
        prior.cond.weight.copy_(solution[1:].T.to(prior.cond.weight))
        prior.cond.bias.zero_()

    def prepare_batch(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Model-space batch ``[B, D]`` -> the same rows with fresh noise, for training.

        Discrete columns (integers, categories) get fresh dequantization noise inside their
        cells, so every epoch sees new continuous points for the same records; in training mode
        continuous dimensions also get Gaussian noise of std ``noise_std`` (if set).
        """
        if isinstance(x, Tensor) and not x.is_floating_point():
            raise TypeError(
                f"x must be a float tensor in model space, got dtype {x.dtype}; encode tables "
                "with model.encode_frame(df)."
            )
        check_float_tensor("x", x, self.event_shape)
        x = redequantize(x, self._cells, self._enc_mean.to(x), self._enc_std.to(x), generator)
        noise_std = self.config["noise_std"]
        if self.training and noise_std > 0:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + noise_std * noise * self._continuous.to(x)
        return x

    def extra_repr(self) -> str:
        cfg = self.config
        return (
            f"num_features={cfg['num_features']}, num_classes={cfg['num_classes']}, "
            f"coupling={cfg['coupling']!r}"
        )
