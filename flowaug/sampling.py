"""Drawing synthetic data from a trained flow: temperature sampling, quality filter, bank.

Samples leave the flow in *model space* (float, for images ``[0, 1]``). Images are then snapped
to the data's intensity grid (``model.levels`` values, ``k / (levels - 1)``) so synthetic images
look like real ones, and stored compactly as integer codes ``k``.

The quality filter keeps a sample of class ``c`` only if the flow itself, by Bayes' rule
(:meth:`~flowaug.flows.base.ConditionalFlow.classify`), gives ``p(c | x) >= filter_threshold``;
it oversamples so each class still gets its quota.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

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
from flowaug.pixels import from_codes, image_to_model, model_to_image, to_codes
from flowaug.seeding import derive_seed
from flowaug.sizes import check_count_in_memory

__all__ = [
    "GenerationStats",
    "SyntheticBank",
    "class_counts",
    "eval_mode",
    "generate",
    "iter_synthetic",
    "posterior_filter",
    "sample_per_class",
]


# --- seeds, modes -----------------------------------------------------------------------------
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
        counts = {c: int(n) for c, n in enumerate(n_per_class)}
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


# --- generation -------------------------------------------------------------------------------
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
    filter_threshold = check_threshold(filter_threshold)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    stats = GenerationStats() if stats is None else stats
    need = {c: n for c, n in counts.items() if n > 0}
    for c in counts:
        stats.drawn.setdefault(c, 0)
        stats.accepted.setdefault(c, 0)
        stats.unfiltered.setdefault(c, 0)

    def labels_for(plan: Mapping[int, int]) -> Tensor:
        return torch.cat([torch.full((n,), c, dtype=torch.long) for c, n in plan.items() if n])

    if filter_threshold is None:
        labels = labels_for(need) if need else torch.empty(0, dtype=torch.long)
        for start in range(0, labels.shape[0], batch_size):
            y = labels[start : start + batch_size]
            yield generate(model, y, temperature, generator, batch_size).cpu(), y
        for c, n in need.items():
            stats.drawn[c] += n
            stats.accepted[c] += n
        return

    while need:
        plan = {}
        for c, n in need.items():
            budget = max_draws_factor * counts[c] - stats.drawn[c]
            rate = max(stats.accepted[c] / stats.drawn[c], 0.05) if stats.drawn[c] else 1.0
            plan[c] = min(budget, math.ceil(1.1 * n / rate))
        exhausted = [c for c, n in plan.items() if n <= 0]
        for c in exhausted:
            rate = stats.accepted[c] / max(stats.drawn[c], 1)
            warnings.warn(
                f"only {rate:.0%} of the samples for class {c} reached filter_threshold="
                f"{filter_threshold} after {stats.drawn[c]} draws; the last {need[c]} are taken "
                "unfiltered. Lower filter_threshold or train the model longer.",
                stacklevel=2,
            )
            stats.unfiltered[c] += need[c]
            y = torch.full((need.pop(c),), c, dtype=torch.long)
            for start in range(0, y.shape[0], batch_size):
                yb = y[start : start + batch_size]
                yield generate(model, yb, temperature, generator, batch_size).cpu(), yb
            del plan[c]
        labels = labels_for(plan) if plan else torch.empty(0, dtype=torch.long)
        for start in range(0, labels.shape[0], batch_size):
            y = labels[start : start + batch_size]
            x = generate(model, y, temperature, generator, batch_size).cpu()
            # judge the sample the user will see: snapped to the data grid
            x_seen = image_to_model(model_to_image(x, model.levels), model.levels)
            keep, _ = posterior_filter(model, x_seen, y, filter_threshold, batch_size)
            for c in y.unique().tolist():
                stats.drawn[c] += int((y == c).sum())
            take = torch.zeros_like(keep)
            for i in torch.nonzero(keep).flatten().tolist():
                c = int(y[i])
                if need.get(c, 0) > 0:
                    need[c] -= 1
                    stats.accepted[c] += 1
                    take[i] = True
            if take.any():
                yield x[take], y[take]
        need = {c: n for c, n in need.items() if n > 0}


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


# --- the bank ---------------------------------------------------------------------------------
def check_bank_size(model: ConditionalFlow, n_per_class: int, argument: str) -> None:
    """Refuse a bank of ``n_per_class`` samples per class that cannot fit in memory: per
    sample its integer codes and the float32 copy that draws are converted from."""
    numel = math.prod(int(s) for s in model.event_shape)
    code = to_codes(torch.zeros(1), model.levels).element_size()
    check_count_in_memory(
        max(model.num_classes, 1) * n_per_class,
        numel * (code + 4),
        argument,
        "keep a smaller bank (a few hundred samples per class suffice with refresh_every) or "
        "draw fresh samples with flowaug.sampling.iter_synthetic.",
        shown=n_per_class,
    )


class SyntheticBank:
    """Pre-generated synthetic samples per class, drawn at the cost of a tensor copy.

    The bank holds ``n_per_class`` samples of every class as integer level codes (uint8 for
    8-bit images: ``K * n * D`` bytes) in shared memory, so DataLoader workers read one copy
    (fork) or receive a handle instead of the data (spawn); a plain pickle carries the codes.
    :meth:`refresh` regenerates it in place every ``refresh_every`` epochs, which workers
    sharing the memory see too.

    Arguments:
        model: a trained class-conditional flow (e.g. :class:`flowaug.Glow`).
        n_per_class: samples stored per class.
        temperature: latent noise scale of the samples.
        seed: seed of the samples; the bank is the same for the same seed and model.
        refresh_every: regenerate at epochs ``0, r, 2r, ...`` (see :meth:`refresh`); ``None``
            keeps one bank.
        filter_threshold: keep only samples whose class posterior under the flow is at least
            this (oversampling to still reach ``n_per_class``); ``None`` keeps all.
        batch_size: samples per forward pass while generating.

    Example:
        >>> from flowaug import Glow
        >>> model = Glow((1, 8, 8), 10, depth=1, hidden=8, levels=17)
        >>> bank = SyntheticBank(model, n_per_class=4, seed=0)
        >>> bank.draw(3).shape
        torch.Size([1, 8, 8])
        >>> bank.codes.shape, bank.codes.dtype
        (torch.Size([10, 4, 1, 8, 8]), torch.uint8)
    """

    def __init__(
        self,
        model: ConditionalFlow,
        n_per_class: int = 256,
        temperature: float = 0.8,
        seed: int | None = 0,
        refresh_every: int | None = None,
        filter_threshold: float | None = None,
        batch_size: int = 256,
    ):
        self.model = check_conditional_model(model)
        if isinstance(n_per_class, bool) or not isinstance(n_per_class, (int, np.integer)):
            raise TypeError(f"n_per_class must be an int >= 1, got {n_per_class!r}.")
        if n_per_class < 1:
            raise ValueError(f"n_per_class must be >= 1, got {n_per_class}.")
        check_bank_size(model, int(n_per_class), "n_per_class")
        if refresh_every is not None and (isinstance(refresh_every, bool) or refresh_every < 1):
            raise ValueError(f"refresh_every must be an int >= 1 or None, got {refresh_every!r}.")
        self.n_per_class = int(n_per_class)
        self.temperature = check_temperature(temperature)
        self.seed = 0 if seed is None else int(seed)
        self.refresh_every = refresh_every
        self.filter_threshold = check_threshold(filter_threshold)
        self.batch_size = int(batch_size)
        self.levels = model.levels
        self.num_classes = model.num_classes
        self.event_shape = tuple(model.event_shape)
        self.stats = GenerationStats()
        self.epoch_block = 0
        self.codes = self._generate(0).share_memory_()
        # bumped by refresh(); processes compare it with the version of their converted copies
        self.version = torch.zeros(1, dtype=torch.int64).share_memory_()
        # per-process copies converted to an output dtype; a forked child may keep its parent's:
        # same content, and the version check catches refreshes
        self._local: dict[torch.dtype, tuple[int, list[list[Tensor]]]] = {}
        self._version_view = self.version.numpy()  # reads without tensor-indexing overhead

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_local"] = {}
        state["_version_view"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _generate(self, block: int) -> Tensor:
        """Codes ``[K, n, *event_shape]`` for refresh block ``block``."""
        generator = torch.Generator().manual_seed(derive_seed(self.seed, block))
        self.stats = GenerationStats()
        counts = {c: self.n_per_class for c in range(self.num_classes)}
        x, y = [], []
        for xb, yb in iter_synthetic(
            self.model,
            counts,
            self.temperature,
            generator,
            self.batch_size,
            self.filter_threshold,
            stats=self.stats,
        ):
            x.append(to_codes(xb, self.levels))
            y.append(yb)
        codes, labels = torch.cat(x), torch.cat(y)
        codes = codes[torch.argsort(labels, stable=True)]
        return codes.reshape(self.num_classes, self.n_per_class, *self.event_shape)

    def __len__(self) -> int:
        return self.num_classes * self.n_per_class

    def __repr__(self) -> str:
        return (
            f"SyntheticBank(num_classes={self.num_classes}, n_per_class={self.n_per_class}, "
            f"temperature={self.temperature}, seed={self.seed}, "
            f"filter_threshold={self.filter_threshold}, refresh_every={self.refresh_every})"
        )

    def refresh(self, epoch: int) -> bool:
        """Regenerate for ``epoch`` if it starts a new block of ``refresh_every`` epochs.

        The new samples depend only on ``(seed, epoch // refresh_every)``, and are written in
        place into the shared tensor, so DataLoader workers (fork or spawn) see them. Call it
        from the main process between epochs, e.g. through ``FlowAugment.set_epoch(epoch)``.

        Returns:
            ``True`` if the bank changed.
        """
        if self.refresh_every is None:
            return False
        block = int(epoch) // self.refresh_every
        if block == self.epoch_block:
            return False
        self.codes.copy_(self._generate(block))
        self.version += 1
        self.epoch_block = block
        return True

    def _check_label(self, label: int) -> int:
        if not 0 <= label < self.num_classes:
            raise ValueError(
                f"label {label} is outside [0, {self.num_classes - 1}]: the bank's model has "
                f"{self.num_classes} classes; map your labels to 0..{self.num_classes - 1}."
            )
        return label

    def _views(self, dtype: torch.dtype) -> list[list[Tensor]]:
        """Per-sample views of the bank converted to ``dtype``, cached per process and version.

        Indexing a Python list of views costs far less than tensor indexing, which matters at
        one draw per image in a DataLoader.
        """
        if self._version_view is None:
            self._version_view = self.version.numpy()
        version = int(self._version_view[0])
        entry = self._local.get(dtype)
        if entry is None or entry[0] != version:
            full = from_codes(self.codes, self.levels, dtype)
            if self.levels == 256 and dtype == torch.uint8:
                full = self.codes  # no conversion: views into the shared tensor
            entry = (version, [list(full[c].unbind(0)) for c in range(self.num_classes)])
            self._local[dtype] = entry
        return entry[1]

    def get(self, label: int, index: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """Sample ``index`` of class ``label`` as an image ``[*event_shape]`` (a fresh copy).

        ``dtype`` float gives values on the data grid in ``[0, 1]``; ``torch.uint8`` gives
        ``0..255``.
        """
        if not 0 <= label < self.num_classes:
            self._check_label(label)
        return self._views(dtype)[label][index].clone()

    def draw(
        self,
        label: int | Tensor,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """A random stored sample of class ``label``: float ``[*event_shape]`` in ``[0, 1]``.

        Args:
            label: a class index.
            generator: a CPU ``torch.Generator`` (``None``: torch's global RNG).
            dtype: output dtype (float: ``[0, 1]``; ``torch.uint8``: ``0..255``).
        """
        index = int(torch.randint(self.n_per_class, (1,), generator=generator))
        return self.get(int(label), index, dtype)

    def draw_batch(
        self,
        labels: Tensor,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """Random stored samples for a LongTensor ``[B]`` of classes: ``[B, *event_shape]``."""
        labels = torch.as_tensor(labels).long().reshape(-1).cpu()
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
            self._check_label(bad)
        index = torch.randint(self.n_per_class, labels.shape, generator=generator)
        return from_codes(self.codes[labels, index], self.levels, dtype)
