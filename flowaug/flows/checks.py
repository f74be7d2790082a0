"""Tensor-level helpers every model shares: the standard-normal density, input and output
checks, and eval mode for a block."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "check_finite_samples",
    "check_float_tensor",
    "evaluating",
    "standard_normal_log_prob",
]

_LOG_2PI = math.log(2 * math.pi)


def standard_normal_log_prob(eps: Tensor) -> Tensor:
    """Log-density of a standard normal, summed over all but the batch dimension.

    Args:
        eps: float tensor ``[B, ...]``.

    Returns:
        Tensor ``[B]`` in nats.
    """
    flat = eps.flatten(1)
    return -0.5 * (flat.pow(2).sum(1) + flat.shape[1] * _LOG_2PI)


def check_float_tensor(
    name: str,
    x: Any,
    shape: Sequence[int] | None = None,
    bounds: tuple[float, float] | None = None,
) -> Tensor:
    """Validate a model-space input: a finite float tensor ``[B, *shape]``, with values inside
    ``bounds`` when given.

    Raises:
        TypeError: ``x`` is not a floating-point tensor.
        ValueError: wrong shape, NaN/inf values, or values outside ``bounds``.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor in model space, got dtype {x.dtype}; "
            "dequantize integer images with model.prepare_batch(x)."
        )
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(
            f"{name} must have shape [B, {', '.join(map(str, shape))}] (the model's event shape), "
            f"got {list(x.shape)}."
        )
    if bounds is None or not x.numel():
        _check_finite(name, x)
        return x
    # one reduction (one host sync on a GPU) checks both: NaN fails the comparison too
    lo, hi = torch.aminmax(x.detach())
    if not bool((lo >= bounds[0]) & (hi <= bounds[1])):
        _check_finite(name, x)
        raise ValueError(
            f"{name} holds values in [{float(lo):.4g}, {float(hi):.4g}], outside the model "
            f"space [{bounds[0]:g}, {bounds[1]:g}]; dequantize integer images with "
            "model.prepare_batch(x) and rescale float images to [0, 1]."
        )
    return x


def check_finite_samples(x: Tensor, temperature: float | None = None) -> Tensor:
    """Refuse generated samples holding NaN or inf (they would be written as blank or garbage
    rows); returns ``x`` unchanged.

    Raises:
        ValueError: how many samples are affected, and what to do.
    """
    finite = torch.isfinite(x.detach()).flatten(1).all(1) if x.ndim > 1 else torch.isfinite(x)
    if bool(finite.all()):
        return x
    bad = int((~finite).sum())
    at = "" if temperature is None else f" at temperature {temperature:g}"
    raise ValueError(
        f"the model generated {bad} of {finite.numel()} samples{at} with NaN or infinite "
        "values; nothing was written. Its weights are damaged or the training diverged (reload "
        "or retrain it), or the temperature is too high (try <= 1)."
    )


def _check_finite(name: str, x: Tensor) -> None:
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values; clean the input before the flow.")


@contextmanager
def evaluating(model: nn.Module, train: bool = False) -> Iterator[None]:
    """``model`` in eval mode (``train=True``: train mode) inside the block, its previous mode
    restored after."""
    was_training = model.training
    model.train(train)
    try:
        yield
    finally:
        model.train(was_training)
