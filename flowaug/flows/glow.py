"""Glow: a multi-scale, class-conditional normalizing flow for small images."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from flowaug.flows.base import ConditionalFlow
from flowaug.flows.layers import FlowStep, GaussianPrior, LogitTransform, Split, Squeeze
from flowaug.pixels import check_levels

__all__ = ["Glow"]


def _default_scales(height: int, width: int) -> int:
    """As many scales as keep the top at >= 2x2 pixels, at most 3."""
    scales = 0
    while scales < 3 and height % 2 == 0 and width % 2 == 0 and min(height, width) >= 4:
        height, width, scales = height // 2, width // 2, scales + 1
    return max(scales, 1)


def _renamed_num_levels(num_scales: int | None, num_levels: int | None) -> int | None:
    """``num_scales``, or its deprecated old name ``num_levels`` (with a warning)."""
    if num_levels is None:
        return num_scales
    warnings.warn(
        "Glow(num_levels=...) is now Glow(num_scales=...) (it is the number of scales, not of "
        "intensity levels, which is `levels`); num_levels will be removed.",
        DeprecationWarning,
        stacklevel=3,
    )
    if num_scales is not None and num_scales != num_levels:
        raise ValueError(
            f"num_scales={num_scales} and its old name num_levels={num_levels} disagree; pass "
            "num_scales only."
        )
    return num_levels


def _check_scales(h: int, w: int, num_scales: int, chosen: bool) -> None:
    """Refuse ``num_scales`` squeezes that ``h x w`` images cannot take, saying what fits."""
    if num_scales >= 1 and not h % (2**num_scales) and not w % (2**num_scales):
        return
    fits = 0
    while fits < 3 and h % (2 ** (fits + 1)) == 0 and w % (2 ** (fits + 1)) == 0:
        fits += 1
    smaller = (
        f", or pass Glow(num_scales={fits}) (the most scales {h}x{w} takes)"
        if chosen and fits >= 1
        else ""
    )
    size = max(8, 8 * round(max(h, w) / 8))
    raise ValueError(
        f"Glow with num_scales={num_scales} scales needs height and width divisible by "
        f"{2**num_scales}, got {h}x{w}; resize or pad the images to e.g. {size}x{size} "
        f"(`flowaug fit --image-size {size}`, or torchvision v2.Resize / v2.Pad before "
        f"fitting){smaller}."
    )


class Glow(ConditionalFlow):
    """Multi-scale Glow for small images, conditioned on a class label.

    Data ``x`` in ``[0, 1]`` (dequantized) goes through a logit transform, then ``num_scales``
    scales of ``squeeze -> depth x (ActNorm, LU 1x1 conv, affine coupling) -> split``; the last
    scale ends in a Gaussian prior. The class enters through a learned embedding that biases
    every coupling network, every split prior and the top prior. The whole map lands on a
    standard-normal latent ``eps [B, D]``, which :meth:`encode` returns and :meth:`decode` inverts.

    References:
        Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018)
        https://arxiv.org/abs/1807.03039

    Arguments:
        image_shape: ``(C, H, W)``, with ``H`` and ``W`` even (8x8 up to 32x32, 1 or 3 channels).
        num_classes: number of classes; ``None`` or ``0`` for an unconditional model.
        num_scales: number of scales (default: as many as keep the top at >= 2x2, at most 3).
            ``num_levels``, its old name, still works with a ``DeprecationWarning``.
        depth: flow steps per scale.
        hidden: width of the coupling networks.
        cond_dim: size of the class embedding.
        dropout: dropout inside coupling networks (regularization for small data).
        clamp: bound on the coupling log-scales.
        logit_alpha: margin of the logit preprocessing.
        levels: intensity levels of the integer images the model is for (256 for 8-bit images,
            17 for scikit-learn's digits); used to dequantize, quantize and report bits/dim.
        coupling: ``"affine"`` (Glow's) or ``"spline"`` (rational-quadratic splines, more
            flexible per layer).
        bins: spline bins when ``coupling="spline"``.

    Example:
        >>> model = Glow((1, 8, 8), num_classes=10)
        >>> x = torch.rand(4, 1, 8, 8)
        >>> y = torch.tensor([0, 1, 2, 3])
        >>> model.log_prob(x, y).shape
        torch.Size([4])
        >>> torch.allclose(model.decode(model.encode(x, y), y), x, atol=1e-4)
        True
        >>> model.sample(torch.tensor([7, 7]), temperature=0.7).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        num_classes: int | None = None,
        num_scales: int | None = None,
        depth: int = 8,
        hidden: int = 64,
        cond_dim: int = 32,
        dropout: float = 0.0,
        clamp: float = 2.0,
        logit_alpha: float = 0.05,
        levels: int = 256,
        coupling: str = "affine",
        bins: int = 8,
        num_levels: int | None = None,
    ):
        super().__init__()
        num_scales = _renamed_num_levels(num_scales, num_levels)
        if len(image_shape) != 3 or any(int(s) <= 0 for s in image_shape):
            raise ValueError(
                f"image_shape must be (C, H, W) with positive sizes, got {image_shape}."
            )
        c, h, w = (int(s) for s in image_shape)
        chosen = num_scales is not None
        num_scales = _default_scales(h, w) if num_scales is None else int(num_scales)
        _check_scales(h, w, num_scales, chosen)
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}.")
        num_classes = int(num_classes or 0)
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = unconditional), got {num_classes}.")

        self.event_shape = (c, h, w)
        self.num_classes = num_classes
        self.config = dict(
            image_shape=[c, h, w],
            num_classes=num_classes,
            num_scales=num_scales,
            depth=depth,
            hidden=hidden,
            cond_dim=cond_dim,
            dropout=dropout,
            clamp=clamp,
            logit_alpha=logit_alpha,
            levels=check_levels(levels),
            coupling=coupling,
            bins=bins,
        )
        cond = cond_dim if num_classes else 0
        self.embedding = nn.Embedding(num_classes, cond_dim) if num_classes else None
        self.preprocess = LogitTransform(logit_alpha)
        # where logit(alpha + (1 - 2 alpha) x) is defined: [0, 1] and a sliver around it
        a = float(logit_alpha)
        self.input_bounds = (-a / (1 - 2 * a), (1 - a) / (1 - 2 * a))
        self.squeeze = Squeeze()
        self._build_scales(num_scales, depth, cond, dropout, clamp, coupling, bins)

    def _build_scales(self, num_scales: int, depth: int, cond: int, *step_args: Any) -> None:
        """``num_scales`` x (squeeze, ``depth`` flow steps, split), then the top prior."""
        c, h, w = self.event_shape
        hidden = self.config["hidden"]
        self.scales = nn.ModuleList()
        self.splits = nn.ModuleList()
        # latent shapes of the factored-out halves, in the order they appear in eps
        self._latent_shapes: list[tuple[int, int, int]] = []
        for scale in range(num_scales):
            c, h, w = 4 * c, h // 2, w // 2
            self.scales.append(
                nn.ModuleList(FlowStep(c, hidden, cond, True, *step_args) for _ in range(depth))
            )
            if scale < num_scales - 1:
                self.splits.append(Split(c, hidden, cond))
                self._latent_shapes.append((c - c // 2, h, w))
                c = c // 2
        self._latent_shapes.append((c, h, w))
        self.prior = GaussianPrior((c, h, w), cond)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Glow:
        """Rebuild from a saved ``config``; configs saved before the rename say ``num_levels``."""
        config = dict(config)
        if "num_levels" in config:
            config["num_scales"] = config.pop("num_levels")
        return cls(**config)

    def extra_repr(self) -> str:
        cfg = self.config
        return (
            f"image_shape={cfg['image_shape']}, num_classes={cfg['num_classes']}, "
            f"num_scales={cfg['num_scales']}, depth={cfg['depth']}, coupling={cfg['coupling']!r}"
        )

    @property
    def latent_scale_sizes(self) -> list[int]:
        """Sizes of the factored-out latents, finest scale first (the top prior's part last)."""
        return [math.prod(s) for s in self._latent_shapes]

    def _cond(self, y: Tensor | None) -> Tensor | None:
        return None if self.embedding is None or y is None else self.embedding(y)

    def _forward(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
        cond = self._cond(y)
        h, logdet = self.preprocess(x)
        parts = []
        for i, steps in enumerate(self.scales):
            h, _ = self.squeeze(h)
            for step in steps:
                h, ld = step(h, cond)
                logdet = logdet + ld
            if i < len(self.splits):
                h, ld = self.splits[i](h, cond)
                logdet = logdet + ld
                keep = self.splits[i].keep
                parts.append(h[:, keep:].flatten(1))
                h = h[:, :keep]
        eps, ld = self.prior(h, cond)
        parts.append(eps.flatten(1))
        return torch.cat(parts, dim=1), logdet + ld

    def _inverse(self, eps: Tensor, y: Tensor | None) -> Tensor:
        cond = self._cond(y)
        chunks = eps.split(self.latent_scale_sizes, dim=1)
        parts = [p.reshape(-1, *s) for p, s in zip(chunks, self._latent_shapes, strict=True)]
        h = self.prior.inverse(parts[-1], cond)
        for i in reversed(range(len(self.scales))):
            if i < len(self.splits):
                h = self.splits[i].inverse(torch.cat([h, parts[i]], dim=1), cond)
            for step in reversed(self.scales[i]):
                h = step.inverse(h, cond)
            h = self.squeeze.inverse(h)
        return self.preprocess.inverse(h)
