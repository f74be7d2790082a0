"""Generation: temperature sampling in batches, and the quality filter by class posterior."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from flowaug._checks import check_temperature, check_threshold
from flowaug.flows.base import (
    ConditionalFlow,
    check_conditional_model,
    check_finite_samples,
    evaluating,
)
from flowaug.pixels import image_to_model, model_to_image
from flowaug.seeding import derive_seed

__all__ = [
    "GenerationStats",
    "class_counts",
    "eval_mode",
    "generate",
    "iter_synthetic",
    "posterior_filter",
    "sample_per_class",
]


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Evaluation mode and no autograd for the block; the previous mode is restored after."""
    with evaluating(model), torch.no_grad():
        yield


def class_counts(
    n_per_class: int | Mapping[int, int] | Sequence[int], num_classes: int
) -> dict[int, int]:
    """Normalize ``n_per_class`` to ``{class: count}``.

    Args:
        n_per_class: one count for every class, a ``{class: count}`` mapping, or a sequence of
            ``num_classes`` counts.
        num_classes: the model's number of classes.
    """
    if isinstance(n_per_class, bool):
        raise TypeError(
            f"n_per_class must be an int, a mapping or a sequence, got {n_per_class!r}."
        )
    if isinstance(n_per_class, (int, np.integer)):
        counts = {c: int(n_per_class) for c in range(num_classes)}
    elif isinstance(n_per_class, Mapping):
        counts = {int(c): int(n) for c, n in n_per_class.items()}
    elif isinstance(n_per_class, Sequence) and not isinstance(n_per_class, str):
        if len(n_per_class) != num_classes:
            raise ValueError(
                f"n_per_class has {len(n_per_class)} counts for a {num_classes}-class model; "
                "give one count per class or a {class: count} dict."
            )
        counts = dict(enumerate(int(n) for n in n_per_class))
    else:
        raise TypeError(
            f"n_per_class must be an int, a {{class: count}} dict or a list of counts, got "
            f"{type(n_per_class).__name__}."
        )
    for c, n in counts.items():
        if not 0 <= c < num_classes:
            raise ValueError(
                f"n_per_class names class {c}, outside [0, {num_classes - 1}] for this "
                f"{num_classes}-class model."
            )
        if n < 0:
            raise ValueError(f"n_per_class must be >= 0, got {n} for class {c}.")
    return counts


def generate(
    model: ConditionalFlow,
    labels: Tensor,
    temperature: float = 0.8,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
) -> Tensor:
    """Temperature sampling in batches, in eval mode and without autograd.

    Args:
        model: a class-conditional flow.
        labels: LongTensor ``[N]`` of classes.
        temperature: scale of the latent noise; ``< 1`` trades diversity for cleaner samples.
        generator: a CPU ``torch.Generator``; noise is drawn on the CPU, so results do not
            depend on the model's device.
        batch_size: samples per forward pass.

    Returns:
        float tensor ``[N, *event_shape]`` in model space, on the model's device.
    """
    model = check_conditional_model(model)
    return _generate(model, labels, check_temperature(temperature), generator, batch_size)


def _generate(model, labels, temperature, generator, batch_size) -> Tensor:
    labels = torch.as_tensor(labels).long().reshape(-1)
    out = []
    with eval_mode(model):
        for start in range(0, labels.shape[0], batch_size):
            y = labels[start : start + batch_size]
            eps = torch.randn(y.shape[0], model.event_dim, generator=generator)
            # noise that overflows (a huge temperature) is refused as the samples it would give
            eps = check_finite_samples(eps * temperature, temperature)
            x = model.decode(eps.to(model.device), y.to(model.device))
            out.append(check_finite_samples(x, temperature))
    if not out:
        return torch.empty(0, *model.event_shape, device=model.device)
    return torch.cat(out)


def posterior_filter(
    model: ConditionalFlow, x: Tensor, y: Tensor, threshold: float, batch_size: int = 256
) -> tuple[Tensor, Tensor]:
    """Which samples the flow assigns to their own class with posterior ``>= threshold``.

    Args:
        x: float tensor ``[N, *event_shape]`` in model space.
        y: LongTensor ``[N]``: the class each sample was drawn for.
        threshold: minimal ``p(y | x)`` under the flow (uniform class prior).

    Returns:
        ``(keep, posterior)``: BoolTensor ``[N]`` and float tensor ``[N]`` of ``p(y | x)``.
    """
    posts = []
    with eval_mode(model):
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size].to(model.device)
            yb = y[start : start + batch_size].to(model.device)
            posts.append(model.classify(xb).gather(1, yb[:, None]).squeeze(1).cpu())
    post = torch.cat(posts) if posts else torch.empty(0)
    return post >= threshold, post


@dataclass
class GenerationStats:
    """What :func:`iter_synthetic` did, per class: samples drawn, accepted, taken unfiltered."""

    drawn: dict[int, int] = field(default_factory=dict)
    accepted: dict[int, int] = field(default_factory=dict)
    unfiltered: dict[int, int] = field(default_factory=dict)

    def acceptance_rate(self) -> dict[int, float]:
        return {c: self.accepted[c] / max(self.drawn[c], 1) for c in self.drawn}


def iter_synthetic(
    model: ConditionalFlow,
    counts: Mapping[int, int],
    temperature: float = 0.8,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
    filter_threshold: float | None = None,
    max_draws_factor: int = 20,
    stats: GenerationStats | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield batches ``(x, y)`` until every class has its count; the building block of the rest.

    Without a filter, labels are laid out class by class and cut into batches of
    ``batch_size``. With ``filter_threshold``, rounds of sampling oversample each class by its
    observed acceptance rate and keep samples whose class posterior passes; a class still
    short after ``max_draws_factor * count`` draws is completed without the filter, with a
    warning.

    Args:
        counts: ``{class: number of samples}``.
        stats: filled in place with per-class draws and acceptances, if given.

    Yields:
        ``x``: float tensor ``[b, *event_shape]`` in model space (on CPU); ``y``: LongTensor
        ``[b]``. Deterministic for a given generator state and ``batch_size``.
    """
    model = check_conditional_model(model)
    temperature = check_temperature(temperature)
    threshold = check_threshold(filter_threshold)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    stats = GenerationStats() if stats is None else stats
    for c in counts:
        for tally in (stats.drawn, stats.accepted, stats.unfiltered):
            tally.setdefault(c, 0)
    need = {c: n for c, n in counts.items() if n > 0}

    def draw(plan: Mapping[int, int]) -> Iterator[tuple[Tensor, Tensor]]:
        """Samples for ``plan`` ``{class: n}``, class after class, in batches (x on the CPU)."""
        labels = torch.cat(
            [torch.full((n,), c, dtype=torch.long) for c, n in plan.items() if n]
            or [torch.empty(0, dtype=torch.long)]
        )
        for start in range(0, labels.shape[0], batch_size):
            y = labels[start : start + batch_size]
            yield _generate(model, y, temperature, generator, batch_size).cpu(), y

    if threshold is None:
        yield from draw(need)
        for c, n in need.items():
            stats.drawn[c] += n
            stats.accepted[c] += n
        return
    while need:
        plan = {c: _round_quota(c, n, counts[c] * max_draws_factor, stats) for c, n in need.items()}
        for c in [c for c, n in plan.items() if n <= 0]:
            warnings.warn(
                f"only {stats.accepted[c] / max(stats.drawn[c], 1):.0%} of the samples for class "
                f"{c} reached filter_threshold={threshold} after {stats.drawn[c]} draws; the "
                f"last {need[c]} are taken unfiltered. Lower filter_threshold or train the model "
                "longer.",
                stacklevel=2,
            )
            stats.unfiltered[c] += need[c]
            yield from draw({c: need.pop(c)})
            del plan[c]
        for x, y in draw(plan):
            take = _accept(model, x, y, need, stats, threshold, batch_size)
            if take.any():
                yield x[take], y[take]
        need = {c: n for c, n in need.items() if n > 0}


def _round_quota(c: int, n: int, max_draws: int, stats: GenerationStats) -> int:
    """Draws for class ``c`` this round: ``n`` still needed over its acceptance rate so far,
    within what is left of ``max_draws`` (``<= 0``: its budget is spent)."""
    rate = max(stats.accepted[c] / stats.drawn[c], 0.05) if stats.drawn[c] else 1.0
    return min(max_draws - stats.drawn[c], math.ceil(1.1 * n / rate))


def _accept(model, x, y, need, stats, threshold, batch_size) -> Tensor:
    """Bool ``[b]``: the samples that pass the filter while their class still needs some;
    ``need`` and ``stats`` are updated in place."""
    # judge the sample the user will see: snapped to the data grid
    x_seen = image_to_model(model_to_image(x, model.levels), model.levels)
    keep, _ = posterior_filter(model, x_seen, y, threshold, batch_size)
    for c in y.unique().tolist():
        stats.drawn[c] += int((y == c).sum())
    take = torch.zeros_like(keep)
    for i in torch.nonzero(keep).flatten().tolist():
        c = int(y[i])
        if need.get(c, 0) > 0:
            need[c] -= 1
            stats.accepted[c] += 1
            take[i] = True
    return take


def sample_per_class(
    model: ConditionalFlow,
    n_per_class: int | Mapping[int, int] | Sequence[int],
    temperature: float = 0.8,
    seed: int | None = 0,
    batch_size: int = 256,
    filter_threshold: float | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Draw ``n_per_class`` samples of every class, sorted by class.

    Args:
        model: a class-conditional flow.
        n_per_class: an int for every class, or per-class counts (see :func:`class_counts`).
        temperature: latent noise scale.
        seed: seeds a private generator (ignored when ``generator`` is given).
        filter_threshold: keep only samples with class posterior ``>=`` this (``None``: all).

    Returns:
        ``(x, y)``: float tensor ``[N, *event_shape]`` in model space on CPU, LongTensor ``[N]``.
    """
    model = check_conditional_model(model)
    counts = class_counts(n_per_class, model.num_classes)
    if generator is None:
        generator = torch.Generator().manual_seed(derive_seed(0 if seed is None else seed))
    xs, ys = [], []
    for x, y in iter_synthetic(model, counts, temperature, generator, batch_size, filter_threshold):
        xs.append(x)
        ys.append(y)
    if not xs:
        return torch.empty(0, *model.event_shape), torch.empty(0, dtype=torch.long)
    x, y = torch.cat(xs), torch.cat(ys)
    order = torch.argsort(y, stable=True)
    return x[order], y[order]
