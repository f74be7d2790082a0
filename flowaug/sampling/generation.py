"""Generation: temperature sampling in batches, and the quality filter by class posterior."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from flowaug._checks import check_temperature, check_threshold
from flowaug.flows.base import ConditionalFlow, check_conditional_model
from flowaug.flows.checks import check_finite_samples, evaluating
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
    """``{class: count}`` from one count for every class, a ``{class: count}`` mapping, or a
    sequence of ``num_classes`` counts."""
    if isinstance(n_per_class, (int, np.integer)) and not isinstance(n_per_class, bool):
        counts = dict.fromkeys(range(num_classes), int(n_per_class))
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
            f"{type(n_per_class).__name__} {n_per_class!r:.80}."
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
    """Samples of classes ``labels`` (LongTensor ``[N]``): float ``[N, *event_shape]`` in model
    space, on the model's device; ``batch_size`` per pass, in eval mode, without autograd.

    The latent noise is drawn on the CPU from ``generator`` (results do not depend on the
    model's device) and scaled by ``temperature`` (``< 1``: cleaner, less diverse samples).
    """
    model = check_conditional_model(model)
    temperature = check_temperature(temperature)
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
    """Which samples ``x`` (model space ``[N, *event_shape]``) the flow assigns to the class
    they were drawn for, ``y`` ``[N]``, with posterior ``p(y | x) >= threshold`` (uniform class
    prior): ``(keep, posterior)``, BoolTensor ``[N]`` and float tensor ``[N]``."""
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
    """Yield batches ``(x, y)`` until every class has its ``counts[class]``: float ``[b,
    *event_shape]`` in model space on the CPU and LongTensor ``[b]``, deterministic for a
    generator state and ``batch_size``; the building block of the rest.

    Without a filter, labels are laid out class by class and cut into batches. With
    ``filter_threshold``, rounds of sampling oversample each class by its acceptance rate so
    far and keep samples whose class posterior passes; a class still short after
    ``max_draws_factor * count`` draws is completed unfiltered, with a warning. ``stats``, if
    given, is filled in place."""
    model = check_conditional_model(model)
    threshold = check_threshold(filter_threshold)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    stats = GenerationStats() if stats is None else stats
    for tally, c in itertools.product((stats.drawn, stats.accepted, stats.unfiltered), counts):
        tally.setdefault(c, 0)
    need = {c: n for c, n in counts.items() if n > 0}

    def draw(plan: Mapping[int, int]) -> Iterator[tuple[Tensor, Tensor]]:
        labels = [torch.full((n,), c, dtype=torch.long) for c, n in plan.items() if n]
        labels = torch.cat(labels or [torch.empty(0, dtype=torch.long)])
        for start in range(0, labels.shape[0], batch_size):
            y = labels[start : start + batch_size]
            yield generate(model, y, temperature, generator, batch_size).cpu(), y

    if threshold is None:
        yield from draw(need)
        for c, n in need.items():
            stats.drawn[c] += n
            stats.accepted[c] += n
        return
    while need:
        plan = {c: _quota(stats, c, n, max_draws_factor * counts[c]) for c, n in need.items()}
        for c in [c for c, n in plan.items() if n <= 0]:
            warnings.warn(
                f"only {stats.acceptance_rate()[c]:.0%} of the samples for class {c} reached "
                f"filter_threshold={threshold} after {stats.drawn[c]} draws; the last "
                f"{need[c]} are taken unfiltered. Lower filter_threshold or train the model "
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


def _quota(stats: GenerationStats, c: int, n: int, max_draws: int) -> int:
    """Draws for class ``c`` this round: the ``n`` it needs over its acceptance rate so far,
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
    """``n_per_class`` samples of every class (see :func:`class_counts`), sorted by class:
    ``(x, y)``, float ``[N, *event_shape]`` in model space on the CPU and LongTensor ``[N]``.

    ``seed`` seeds a private generator (ignored when ``generator`` is given);
    ``filter_threshold`` keeps only samples with class posterior ``>=`` it (``None``: all).
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
