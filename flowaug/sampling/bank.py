"""The synthetic bank: samples generated once (or once per block of epochs), drawn at the cost of
a tensor copy, shared with DataLoader workers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowaug._checks import check_temperature, check_threshold
from flowaug.flows.base import ConditionalFlow, check_conditional_model
from flowaug.pixels import from_codes, to_codes
from flowaug.sampling.generation import GenerationStats, iter_synthetic
from flowaug.seeding import derive_seed
from flowaug.sizes import check_count_in_memory

__all__ = ["SyntheticBank", "check_bank_size"]


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
        self.epoch_block = 0
        self.codes = self._generate(0).share_memory_()
        # bumped by refresh(); processes compare it with the version of their converted copies
        self.version = torch.zeros(1, dtype=torch.int64).share_memory_()
        # per-process copies converted to an output dtype; a forked child may keep its parent's:
        # same content, and the version check catches refreshes
        self._local: dict[torch.dtype, tuple[int, Tensor, list[list[Tensor]]]] = {}
        self._version_view = self.version.numpy()  # reads without tensor-indexing overhead

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_local": {}, "_version_view": None}

    def _generate(self, block: int) -> Tensor:
        """Codes ``[K, n, *event_shape]`` for refresh block ``block``; fills ``stats``."""
        generator = torch.Generator().manual_seed(derive_seed(self.seed, block))
        self.stats = GenerationStats()
        counts = dict.fromkeys(range(self.num_classes), self.n_per_class)
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
        codes = torch.cat(x)[torch.argsort(torch.cat(y), stable=True)]
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
        """Regenerate for ``epoch`` if it starts a new block of ``refresh_every`` epochs; ``True``
        if the bank changed.

        The new samples depend only on ``(seed, epoch // refresh_every)``, and are written in
        place into the shared tensor, so DataLoader workers (fork or spawn) see them. Call it
        from the main process between epochs, e.g. through ``FlowAugment.set_epoch(epoch)``.
        """
        if self.refresh_every is None or int(epoch) // self.refresh_every == self.epoch_block:
            return False
        block = int(epoch) // self.refresh_every
        self.codes.copy_(self._generate(block))
        self.version += 1
        self.epoch_block = block
        return True

    def _check_label(self, label: int) -> None:
        if not 0 <= label < self.num_classes:
            raise ValueError(
                f"label {label} is outside [0, {self.num_classes - 1}]: the bank's model has "
                f"{self.num_classes} classes; map your labels to 0..{self.num_classes - 1}."
            )

    def _converted(self, dtype: torch.dtype) -> Tensor:
        """The bank converted to ``dtype``, ``[K, n, *event_shape]``, cached per process and
        version (for uint8 output of 8-bit codes: the shared tensor itself, no copy)."""
        if self._version_view is None:
            self._version_view = self.version.numpy()
        version = int(self._version_view[0])
        entry = self._local.get(dtype)
        if entry is None or entry[0] != version:
            full = self.codes
            if not (self.levels == 256 and dtype == torch.uint8):
                full = from_codes(self.codes, self.levels, dtype)
            entry = self._local[dtype] = (version, full, [])
        return entry[1]

    def _views(self, dtype: torch.dtype) -> list[list[Tensor]]:
        """Per-sample views of :meth:`_converted`, made on first use: indexing a list of views
        costs far less than tensor indexing, at one draw per image."""
        full = self._converted(dtype)
        views = self._local[dtype][2]
        if not views:
            views.extend(list(full[c].unbind(0)) for c in range(self.num_classes))
        return views

    def get(self, label: int, index: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """Sample ``index`` of class ``label``, ``[*event_shape]`` of ``dtype`` (float: the data
        grid in ``[0, 1]``; ``torch.uint8``: ``0..255``), a fresh copy."""
        self._check_label(label)
        return self._views(dtype)[label][index].clone()

    def draw(
        self,
        label: int | Tensor,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """A random stored sample of class ``label``, ``[*event_shape]`` of ``dtype`` (float:
        ``[0, 1]``; ``torch.uint8``: ``0..255``), picked with ``generator`` (a CPU
        ``torch.Generator``; ``None``: torch's global RNG)."""
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
        if labels.numel():
            low, high = torch.aminmax(labels)
            self._check_label(int(low) if low < 0 else int(high))
        index = torch.randint(self.n_per_class, labels.shape, generator=generator)
        return self._converted(dtype)[labels, index]
