"""The batches of a training run, each a pure function of the seed and the step.

Reproducibility is by construction rather than by saved random states: the data order is a
function of ``(seed, epoch)``, the dequantization noise of a batch a function of ``(seed,
step)`` (the trainer reseeds dropout from ``(seed, step, rank)``). ``batch_size`` is the
*global* batch: each of ``P`` processes takes its ``batch_size / P`` slice of the same batch, so
without dropout one process and many follow the same trajectory (up to floating-point reduction
order, about 1e-4 in the weights after tens of steps). With dropout they do not: each process
draws the masks of its own slice, which are not the masks one process draws for the same rows,
so runs on different numbers of processes are equally good samples of the same training, not
the same numbers (weights about 1e-2 apart after tens of steps; ``tests/test_distributed.py``
measures both). A run on a fixed number of processes is reproducible either way.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from flowaug.data import FlowData, as_flow_data
from flowaug.flows.checks import evaluating
from flowaug.seeding import generator
from flowaug.training import semi_supervised as semi

__all__ = [
    "Batch", "SemiSupervisedBatches", "TrainBatches", "check_data", "drop_labels", "init_batch",
    "prepare_batch", "stream_indices", "unlabelled_pool", "validation_set",
]  # fmt: skip


def prepare_batch(model: nn.Module, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``model.prepare_batch`` for a raw batch; ``uint8`` goes in as int64.

    ``flowaug.pixels.dequantize`` range-checks ``x.max() >= levels`` in ``x``'s dtype,
    where 256 overflows ``uint8``; widening first sidesteps that (and costs nothing here).
    """
    if x.dtype == torch.uint8:
        x = x.long()
    return model.prepare_batch(x, generator=generator)


def stream_indices(n: int, start: int, count: int, seed: int, key: str) -> Tensor:
    """Positions ``[start, start + count)`` of an endless stream of seeded permutations of
    ``range(n)`` (epoch ``e`` is ``randperm(n)`` seeded by ``(seed, key, e)``).

    A pure function of its arguments, so a resumed run draws the same batches; ``count`` may
    exceed ``n`` (a batch then spans several epochs).

    Returns:
        LongTensor ``[count]`` of indices in ``[0, n)``.
    """
    parts, pos, end = [], start, start + count
    while pos < end:
        epoch, offset = divmod(pos, n)
        perm = torch.randperm(n, generator=generator(seed, key, epoch))
        take = min(n - offset, end - pos)
        parts.append(perm[offset : offset + take])
        pos += take
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def drop_labels(data: Any) -> Any:
    """Unlabelled data as given: labels (if any) are not used."""
    if isinstance(data, FlowData):
        return replace(data, y=None)
    pair = isinstance(data, (tuple, list)) and len(data) == 2
    return data[0] if pair and isinstance(data[0], (Tensor, np.ndarray)) else data


def check_data(model: nn.Module, data: Any, name: str, needs_labels: bool = True) -> FlowData:
    """``data`` as a :class:`FlowData` (converted unless it is one) that fits ``model``."""
    levels = getattr(model, "levels", None)
    out = data
    if not isinstance(data, FlowData):
        out = as_flow_data(data, levels=levels, allow_unlabelled=True)
    if out.event_shape != tuple(model.event_shape):
        raise ValueError(
            f"{name} has samples of shape {list(out.event_shape)} but the model expects "
            f"{list(model.event_shape)}; build the model for this data."
        )
    if out.is_discrete and out.levels != levels:
        raise ValueError(
            f"{name} holds integer data with levels={out.levels} but the model was built "
            f"with levels={levels}; build it with levels={out.levels}."
        )
    classes = int(getattr(model, "num_classes", 0))
    if classes and out.y is None and needs_labels:
        raise ValueError(
            f"{name} has no labels but the model has {classes} classes; pass unlabelled "
            "examples as unlabelled=... next to labelled ones."
        )
    if classes and out.y is not None and int(out.y.max()) >= classes:
        raise ValueError(
            f"{name} has labels up to {int(out.y.max())} but the model has {classes} "
            "classes; build it with num_classes = number of classes."
        )
    return out


def unlabelled_pool(data: FlowData, extra: FlowData | None) -> FlowData | None:
    """The rows of ``data`` without a label followed by those of ``extra`` (its labels
    dropped), or ``None`` when there are none."""
    rows = None if data.y is None or not bool(data.unlabelled_mask.any()) else data.unlabelled()
    if extra is None:
        return rows
    if extra.is_discrete != data.is_discrete:
        raise ValueError(
            f"unlabelled holds {extra.x.dtype} data but train holds {data.x.dtype}; "
            "pass both as integer images with the same levels, or both as floats."
        )
    x = extra.x.to(data.x.dtype)
    return replace(extra, x=x if rows is None else torch.cat([rows.x, x]), y=None)


def split_unlabelled(
    model: nn.Module, config: Any, train: FlowData, unlabelled: Any
) -> tuple[FlowData, FlowData | None]:
    """``(labelled training rows, unlabelled pool or None)``. An unconditional model has no
    use for labels: it trains on every row, and no pool is returned."""
    extra = None
    if unlabelled is not None:
        extra = check_data(model, drop_labels(unlabelled), "unlabelled", needs_labels=False)
    pool = unlabelled_pool(train, extra)
    if pool is None or not len(pool):
        return train, None
    if not int(getattr(model, "num_classes", 0)):
        rows = train.x if train.y is None else train.labelled().x
        return replace(train, x=torch.cat([rows, pool.x]), y=None), None
    labelled = train.labelled()
    if not len(labelled):
        raise ValueError(
            "train has no labelled rows but the model is class-conditional; give some "
            "labelled examples, or fit an unconditional model (num_classes=None)."
        )
    if isinstance(config.class_prior, list) and len(config.class_prior) != model.num_classes:
        raise ValueError(
            f"class_prior has {len(config.class_prior)} entries but the model has "
            f"{model.num_classes} classes; give one per class."
        )
    return labelled, pool


def init_batch(model: nn.Module, data: FlowData, seed: int, size: int) -> tuple[Tensor, Any]:
    """The seeded batch ``(x in model space, y or None)`` of data-dependent initialization:
    the same rows and noise on every process."""
    index = torch.randperm(len(data), generator=generator(seed, "init"))[: min(size, len(data))]
    x = prepare_batch(model, data.x[index], generator(seed, "init-noise"))
    return x, None if data.y is None else data.y[index]


def validation_set(model: nn.Module, data: FlowData, seed: int) -> torch.utils.data.Dataset:
    """``(x, y)`` pairs of labelled rows with fixed dequantization noise, so that evaluations
    differ only through the weights; in eval mode, so that training-only input noise (e.g.
    TabularFlow's ``noise_std``) stays off."""
    with evaluating(model):
        x = prepare_batch(model, data.x, generator(seed, "val-noise"))
    return torch.utils.data.TensorDataset(x.cpu(), data.y)


class Batch(NamedTuple):
    """This process's slice of a global batch, on the training device."""

    x: Tensor  # [B / P, *event_shape] in model space
    y: Tensor | None  # [B / P]
    weights: Tensor | None  # [B / P] loss weights (semi-supervised runs), else None
    weight_sum: Tensor | None  # the global batch's total weight


class TrainBatches:
    """The global batch of every step and this process's slice of it, from the training data
    and more unlabelled rows as ``FlowTrainer.fit`` takes them (checked against ``model``).

    Without unlabelled rows epoch ``e`` walks ``randperm(N)`` seeded by ``(seed, "order", e)``;
    with them :class:`SemiSupervisedBatches` draws. The global batch is dequantized with noise
    seeded by ``(seed, "noise", step)``, then sliced for process ``rank`` of ``world``.
    """

    def __init__(self, model: nn.Module, train: Any, unlabelled: Any, config: Any, world: int,
                 rank: int):  # fmt: skip
        train, pool = split_unlabelled(model, config, check_data(model, train, "train"), unlabelled)
        self.num_train = len(train) + (0 if pool is None else len(pool))
        if config.batch_size % world:
            raise ValueError(
                f"batch_size={config.batch_size} must divide by the number of processes ({world})."
            )
        if config.batch_size > self.num_train:
            raise ValueError(
                f"batch_size={config.batch_size} exceeds the {self.num_train} training samples; "
                "use a batch_size <= the training set size."
            )
        self.model, self.train, self.pool, self.config = model, train, pool, config
        self.steps_per_epoch = self.num_train // config.batch_size
        local = config.batch_size // world
        self.mine = slice(rank * local, (rank + 1) * local)
        self.ssl = None if pool is None else SemiSupervisedBatches(
            train.x, train.y, pool.x, model.num_classes, config, self.prepare
        )
        self._order: tuple[int, Tensor | None] = (-1, None)

    def prepare(self, x: Tensor, gen: torch.Generator) -> Tensor:
        return prepare_batch(self.model, x, gen)

    def epoch(self, step: int) -> int:
        return step // self.steps_per_epoch

    def everything(self) -> FlowData:
        """Training rows and pool in one set for ActNorm's init (the pool as class 0: at
        initialization the class does not change any activation, since every coupling and
        prior starts without class dependence)."""
        train, pool = self.train, self.pool
        if pool is None:
            return train
        y = torch.cat([train.y, torch.zeros(len(pool), dtype=torch.long)])
        return replace(train, x=torch.cat([train.x, pool.x.to(train.x.dtype)]), y=y)

    def __call__(self, step: int, device: torch.device) -> Batch:
        """The batch of step ``step`` (refreshing the pool's posteriors first when due)."""
        cfg, weights = self.config, None
        if self.ssl is not None:
            if self.ssl.needs_refresh(step):
                self.ssl.refresh(self.model, step, device, cfg.eval_batch_size)
            x_raw, y, weights = self.ssl.batch(step)
        else:
            epoch, pos = divmod(step, self.steps_per_epoch)
            if epoch != self._order[0]:
                gen = generator(cfg.seed, "order", epoch)
                self._order = (epoch, torch.randperm(self.num_train, generator=gen))
            index = self._order[1][pos * cfg.batch_size : (pos + 1) * cfg.batch_size]
            x_raw, y = self.train.x[index], None if self.train.y is None else self.train.y[index]
        x = self.prepare(x_raw, generator(cfg.seed, "noise", step))[self.mine].to(device)
        y = None if y is None else y[self.mine].to(device)
        if weights is None:
            return Batch(x, y, None, None)
        return Batch(x, y, weights[self.mine].to(device), weights.sum().clamp_min(1e-12))


class SemiSupervisedBatches:
    """The batches of a semi-supervised run and the unlabelled pool's posteriors.

    Before ``config.unlabelled_start`` a batch holds labelled rows only; from then on
    ``round(batch_size * unlabelled_fraction)`` of its rows come from the pool, each with a class
    from the posterior table (refreshed every ``refresh_every`` steps) and a weight. Every draw
    is a function of ``(seed, step)`` and the table, which checkpoints keep.

    Arguments:
        labelled_x, labelled_y: the labelled rows ``[N_l, ...]`` (raw: integer images stay
            integer) and their classes ``[N_l]``; ``pool_x``: the unlabelled rows, raw.
        prepare: ``prepare(x_raw, generator) -> x`` in model space (dequantization).
    """

    def __init__(self, labelled_x, labelled_y, pool_x, num_classes, config, prepare):
        self.labelled_x, self.labelled_y, self.pool_x = labelled_x, labelled_y, pool_x
        self.num_classes, self.config, self.prepare = num_classes, config, prepare
        start = config.unlabelled_start
        self.start = config.warmup_steps if start is None else start
        self.refresh_every = config.refresh_every or config.eval_every
        self.unlabelled_batch = int(round(config.batch_size * config.unlabelled_fraction))
        self.labelled_batch = config.batch_size - self.unlabelled_batch
        self.learn_prior = config.class_prior == "learn"
        if isinstance(config.class_prior, list):
            self.prior = torch.tensor(config.class_prior, dtype=torch.float32)
        elif self.learn_prior:  # the labelled classes' shares, then EM updates
            self.prior = semi.estimate_prior(labelled_y, torch.zeros(0, num_classes), num_classes)
        else:
            self.prior = torch.full((num_classes,), 1.0 / num_classes)
        self.log_posterior: Tensor | None = None

    def needs_refresh(self, step: int) -> bool:
        """Whether the posteriors are recomputed before step ``step``."""
        if step < self.start or not self.unlabelled_batch:
            return False
        return (step - self.start) % self.refresh_every == 0 or self.log_posterior is None

    def refresh(self, model: nn.Module, step: int, device: torch.device, batch_size: int) -> None:
        """Recompute the pool's posteriors with the current weights (and the prior, if learned)."""
        with evaluating(model):
            x = self.prepare(self.pool_x, generator(self.config.seed, "refresh", step))
        log_posterior = semi.class_log_posteriors(model, x, self.prior.log(), batch_size, device)
        if self.learn_prior:
            self.prior = semi.estimate_prior(self.labelled_y, log_posterior, self.num_classes)
        if self.config.align_posteriors:
            log_posterior = semi.align_to_prior(log_posterior, self.prior)
        self.log_posterior = log_posterior

    def batch(self, step: int) -> tuple[Tensor, Tensor, Tensor]:
        """The global batch of step ``step``: ``(x_raw [B, ...], y [B], weights [B])``."""
        seed = self.config.seed
        n_l, n_u = len(self.labelled_y), self.pool_x.shape[0]
        if step < self.start or not self.unlabelled_batch:
            size = self.config.batch_size
            index = stream_indices(n_l, step * size, size, seed, "lab-warm")
            return self.labelled_x[index], self.labelled_y[index], torch.ones(size)
        t = step - self.start
        lab = stream_indices(n_l, t * self.labelled_batch, self.labelled_batch, seed, "lab")
        unl = stream_indices(n_u, t * self.unlabelled_batch, self.unlabelled_batch, seed, "unl")
        cfg = self.config
        labels, weights = semi.draw_labels(self.log_posterior[unl], cfg.semi_supervised,
                                           cfg.pseudo_threshold, generator(seed, "pseudo", step))
        x = torch.cat([self.labelled_x[lab], self.pool_x[unl]])
        y = torch.cat([self.labelled_y[lab], labels])
        w = torch.cat([torch.ones(len(lab)), weights * cfg.unlabelled_weight])
        return x, y, w

    def state_tensors(self) -> dict[str, Tensor]:
        """What a checkpoint keeps: the posterior table and the prior."""
        out = {"prior": self.prior}
        if self.log_posterior is not None:
            out["log_posterior"] = self.log_posterior
        return out

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        if "prior" in tensors:
            self.prior = tensors["prior"].float()
        self.log_posterior = tensors.get("log_posterior")
