"""Maximum-likelihood training of flowaug models on Hugging Face Accelerate.

:class:`FlowTrainer` runs the same loop on CPU, one GPU or many processes (``torchrun``,
``accelerate launch``): AdamW with warmup and cosine decay, gradient clipping, optional EMA of the
weights, validation bits/dim with best-weights restore and early stopping, skipping of
non-finite steps, and checkpoints from which a run resumes to exactly the weights of an
uninterrupted run.

Reproducibility is by construction rather than by saved random states: the data order is a
function of ``(seed, epoch)``, the dequantization noise of a batch a function of ``(seed,
step)`` and dropout is reseeded from ``(seed, step, rank)`` every step. ``batch_size`` is the
*global* batch: each of ``P`` processes takes its ``batch_size / P`` slice of the same batch, so
without dropout one process and many follow the same trajectory (up to floating-point reduction
order, about 1e-4 in the weights after tens of steps). With dropout they do not: each process
draws the masks of its own slice, which are not the masks one process draws for the same rows,
so runs on different numbers of processes are equally good samples of the same training, not
the same numbers (weights about 1e-2 apart after tens of steps; ``tests/test_distributed.py``
measures both). A run on a fixed number of processes is reproducible either way.

Example:
    >>> from flowaug import Glow
    >>> from flowaug.data import load_sklearn
    >>> data = load_sklearn("digits").subset(range(64))
    >>> model = Glow((1, 8, 8), num_classes=10, depth=1, hidden=8, levels=17)
    >>> history = FlowTrainer(model, TrainConfig(batch_size=32, max_steps=4, eval_every=2,
    ...                                         progress=False)).fit(data)
    >>> [r["step"] for r in history.records]
    [2, 4]
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from flowaug._checks import check_int, check_number
from flowaug.data import FlowData, as_flow_data
from flowaug.io import atomic_write_bytes, clear_stale_temporaries, load_tensors, save_tensors
from flowaug.seeding import generator, stream_seed
from flowaug.training.checkpoint import (
    check_intact,
    clear_stale_checkpoints,
    discard_checkpoint,
    flatten_optimizer_state,
    latest_checkpoint,
    list_checkpoints,
    read_trainer_state,
    unflatten_optimizer_state,
)
from flowaug.training.interrupts import TrainingInterrupted, raise_on_sigterm, signum_of
from flowaug.training.semi_supervised import SEMI_SUPERVISED_MODES, SemiSupervisedBatches

__all__ = [
    "TrainConfig",
    "FlowTrainer",
    "History",
    "NonFiniteLossError",
    "fit",
    "build_model",
    "default_config",
    "train_val_split",
    "latest_checkpoint",
]

_MIXED_PRECISION = ("no", "bf16", "fp16")
_SCHEDULES = ("cosine", "constant")


class NonFiniteLossError(FloatingPointError):
    """Training met too many consecutive steps with a NaN/inf loss or gradient."""


@dataclass
class TrainConfig:
    """Settings of a :class:`FlowTrainer` run.

    Arguments:
        batch_size: global batch size (all processes together); must divide by the number of
            processes.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW decoupled weight decay, applied to weight matrices and kernels
            (tensors with >= 2 dims), not to biases, ActNorm or prior parameters.
        max_steps: number of optimizer steps (an upper bound under early stopping).
        max_time: optional wall-clock budget in seconds: training stops (after a final
            evaluation) at the first step past it; for equal-budget comparisons.
        warmup_steps: linear learning-rate warmup from ``lr / (warmup_steps + 1)``.
        schedule: ``"cosine"`` (decay to ``min_lr_ratio * lr`` at ``max_steps``) or
            ``"constant"``.
        min_lr_ratio: final learning rate of the cosine schedule, relative to ``lr``.
        grad_clip: maximum global gradient norm (``None``: no clipping).
        eval_every: steps between evaluations (a record in the history; validation bits/dim
            when validation data is given). The last step is always evaluated.
        eval_batch_size: batch size per process for validation.
        patience: stop after this many evaluations without a validation improvement larger
            than ``min_delta`` (``None``: never stop early).
        min_delta: smallest decrease of validation bits/dim that counts as an improvement.
        ema_decay: decay of an exponential moving average of the weights, in ``(0, 1)``; when
            set, evaluation and the returned model use the averaged weights. ``None``: off.
        mixed_precision: ``"no"``, ``"bf16"`` (CPU or a GPU that supports it) or ``"fp16"``
            (CUDA only).
        seed: drives data order, dequantization noise, dropout and the init batch.
        output_dir: folder for ``history.json``, ``checkpoints/`` and the trained model
            (``flowaug.load(output_dir)``: the weights the run ends with); ``None`` writes
            nothing.
        checkpoint_every: steps between checkpoints (needs ``output_dir``; ``None``: none).
        keep_checkpoints: how many of the newest checkpoints to keep.
        max_bad_steps: raise :class:`NonFiniteLossError` after this many consecutive steps with
            a non-finite loss or gradient (each is skipped: no update).
        init_batch_size: samples in the (seeded) batch used for data-dependent initialization.
        progress: show a tqdm progress bar (main process only).
        cpu: train on CPU even when a GPU is available.
        semi_supervised: how unlabelled examples (``fit(..., unlabelled=...)``, or label -1)
            enter a class-conditional model: ``"marginal"`` (each with a class drawn from the
            flow's posterior: the class-marginal likelihood) or ``"pseudo"`` (only those whose
            posterior reaches ``pseudo_threshold``, with their most probable class). See
            :mod:`flowaug.semi_supervised`.
        unlabelled_fraction: share of each batch drawn from the unlabelled examples once they
            take part.
        unlabelled_weight: weight of an unlabelled example's loss relative to a labelled one's.
        unlabelled_start: step at which unlabelled examples join (labelled-only before, so that
            the flow's classifier means something); default ``warmup_steps``.
        refresh_every: steps between refreshes of the unlabelled examples' posteriors (and of a
            learned class prior); default ``eval_every``.
        pseudo_threshold: the posterior an unlabelled example needs in ``"pseudo"`` mode.
        class_prior: the class prior ``pi``: ``None`` (uniform), one positive number per class
            (normalized; give it when the unlabelled data's class shares are known to be
            uneven), or ``"learn"`` (EM updates from the unlabelled posteriors at every
            refresh). See :mod:`flowaug.semi_supervised` for why uniform is the default.
        align_posteriors: rescale the unlabelled posteriors so that their mean matches the
            prior (distribution alignment); keeps a class from claiming ever more of the pool.
    """

    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    max_steps: int = 2000
    max_time: float | None = None
    warmup_steps: int = 100
    schedule: str = "cosine"
    min_lr_ratio: float = 0.05
    grad_clip: float | None = 100.0
    eval_every: int = 100
    eval_batch_size: int = 512
    patience: int | None = 10
    min_delta: float = 0.0
    ema_decay: float | None = None
    mixed_precision: str = "no"
    seed: int = 0
    output_dir: str | None = None
    checkpoint_every: int | None = None
    keep_checkpoints: int = 2
    max_bad_steps: int = 20
    init_batch_size: int = 512
    progress: bool = True
    cpu: bool = False
    semi_supervised: str = "marginal"
    unlabelled_fraction: float = 0.5
    unlabelled_weight: float = 1.0
    unlabelled_start: int | None = None
    refresh_every: int | None = None
    pseudo_threshold: float = 0.9
    class_prior: list[float] | str | None = None
    align_posteriors: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):  # numpy scalars (e.g. from a sweep over np.arange) as Python's
            value = getattr(self, f.name)
            if isinstance(value, np.generic) and not isinstance(value, np.bool_):
                setattr(self, f.name, value.item())
        for name in ("progress", "cpu", "align_posteriors"):
            value = getattr(self, name)
            if isinstance(value, np.bool_):
                setattr(self, name, bool(value))
            elif not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False, got {value!r}.")
        if self.output_dir is not None:
            if not isinstance(self.output_dir, (str, os.PathLike)) or not str(self.output_dir):
                raise TypeError(
                    f"output_dir must be a folder path (str or Path) or None, got "
                    f"{self.output_dir!r}."
                )
            self.output_dir = str(self.output_dir)
        positive_ints = (
            "batch_size",
            "max_steps",
            "eval_every",
            "eval_batch_size",
            "keep_checkpoints",
            "max_bad_steps",
            "init_batch_size",
        )
        for name in positive_ints:
            check_int(name, getattr(self, name), minimum=1)
        check_int("warmup_steps", self.warmup_steps, minimum=0)
        check_int("seed", self.seed, minimum=0)
        for name in ("patience", "checkpoint_every", "refresh_every"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), minimum=1)
        if self.unlabelled_start is not None:
            check_int("unlabelled_start", self.unlabelled_start, minimum=0)
        if self.semi_supervised not in SEMI_SUPERVISED_MODES:
            raise ValueError(
                f"semi_supervised must be one of {SEMI_SUPERVISED_MODES}, got "
                f"{self.semi_supervised!r}."
            )
        check_number("unlabelled_fraction", self.unlabelled_fraction, low=0.0, high=1.0)
        if self.unlabelled_fraction >= 1.0:
            raise ValueError(
                f"unlabelled_fraction must be in [0, 1) (some of each batch stays labelled), "
                f"got {self.unlabelled_fraction}."
            )
        check_number("unlabelled_weight", self.unlabelled_weight, low=0.0)
        check_number("pseudo_threshold", self.pseudo_threshold, low=0.0, high=1.0)
        if isinstance(self.class_prior, str) and self.class_prior != "learn":
            raise ValueError(
                f"class_prior must be None, 'learn' or one positive number per class, got "
                f"{self.class_prior!r}."
            )
        if self.class_prior is not None and not isinstance(self.class_prior, str):
            prior = np.asarray(self.class_prior, dtype=float).reshape(-1)
            if prior.size == 0 or not np.all(np.isfinite(prior)) or np.any(prior <= 0):
                raise ValueError(
                    f"class_prior must hold one positive, finite number per class, got "
                    f"{self.class_prior!r}."
                )
            self.class_prior = [float(v) for v in prior / prior.sum()]
        check_number("lr", self.lr, low=0.0, low_open=True)
        check_number("weight_decay", self.weight_decay, low=0.0)
        check_number("min_lr_ratio", self.min_lr_ratio, low=0.0, high=1.0)
        check_number("min_delta", self.min_delta, low=0.0)
        if self.grad_clip is not None:
            check_number("grad_clip", self.grad_clip, low=0.0, low_open=True)
        if self.max_time is not None:
            check_number("max_time", self.max_time, low=0.0, low_open=True)
        if self.ema_decay is not None:
            check_number("ema_decay", self.ema_decay, low=0.0, high=1.0, low_open=True)
            if self.ema_decay >= 1.0:
                raise ValueError(f"ema_decay must be in (0, 1) or None, got {self.ema_decay}.")
        if self.mixed_precision not in _MIXED_PRECISION:
            raise ValueError(
                f"mixed_precision must be one of {_MIXED_PRECISION}, got {self.mixed_precision!r}."
            )
        if self.schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {_SCHEDULES}, got {self.schedule!r}.")
        if self.checkpoint_every is not None and self.output_dir is None:
            raise ValueError(
                "checkpoint_every is set but output_dir is None; give an output_dir to write "
                "checkpoints to."
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; known: {sorted(known)}.")
        return cls(**values)


@dataclass
class History:
    """What a training run recorded.

    Attributes:
        records: one dict per evaluation: ``step``, ``epoch``, ``train_bpd`` (mean over the
            steps since the previous record), ``val_bpd`` (``None`` without validation data),
            ``lr``, ``time`` (seconds since the start), ``bad_steps`` (skipped so far).
        best_step: step of the best validation bits/dim (whose weights the model ends with).
        best_val_bpd: that validation bits/dim.
        stopped_early: whether early stopping ended the run.
        interrupted: the signal number that ended the run (SIGINT 2, SIGTERM 15), or None.
        bad_steps: steps skipped for a non-finite loss or gradient.
        steps: optimizer steps run.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    best_step: int | None = None
    best_val_bpd: float | None = None
    stopped_early: bool = False
    bad_steps: int = 0
    steps: int = 0
    interrupted: int | None = None

    def column(self, key: str) -> list[Any]:
        """One field of every record, e.g. ``history.column("val_bpd")``."""
        return [r.get(key) for r in self.records]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_bytes(path, (json.dumps(self.to_dict(), indent=2) + "\n").encode())

    @classmethod
    def load(cls, path: str | os.PathLike) -> History:
        return cls(**json.loads(Path(path).read_text()))


def prepare_batch(model: nn.Module, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``model.prepare_batch`` for a raw batch; ``uint8`` goes in as int64.

    ``flowaug.pixels.dequantize`` range-checks ``x.max() >= levels`` in ``x``'s dtype,
    where 256 overflows ``uint8``; widening first sidesteps that (and costs nothing here).
    """
    if x.dtype == torch.uint8:
        x = x.long()
    return model.prepare_batch(x, generator=generator)


class _NLLObjective(nn.Module):
    """The training objective as a module, so DDP wraps a ``forward``: bits/dim ``[B]``."""

    def __init__(self, flow: nn.Module, levels: int | None):
        super().__init__()
        self.flow = flow
        self.levels = levels

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        log_prob = self.flow.log_prob(x, y).float()
        return self.flow.bits_per_dim_from_log_prob(log_prob, self.levels)


def _make_accelerator(config: TrainConfig):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    cuda = torch.cuda.is_available() and not config.cpu
    if config.mixed_precision == "fp16" and not cuda:
        raise ValueError(
            "mixed_precision='fp16' needs a CUDA GPU (fp16 autocast does not run on CPU); use "
            "mixed_precision='bf16' on CPU, or 'no'."
        )
    if config.mixed_precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise ValueError("mixed_precision='bf16' is not supported by this GPU; use 'fp16' or 'no'.")
    kwargs = dict(cpu=not cuda, mixed_precision=config.mixed_precision)
    try:
        return Accelerator(**kwargs)
    except ValueError as err:
        # Accelerate keeps one global state per process; a second trainer with another
        # precision in the same single-process session must start it afresh
        if "already been initialized" not in str(err) or PartialState().num_processes > 1:
            raise
        AcceleratorState._reset_state()
        return Accelerator(**kwargs)


def _needs_initialization(model: nn.Module) -> bool:
    flags = [b for n, b in model.named_buffers() if n.rsplit(".", 1)[-1] == "initialized"]
    return not flags or not all(bool(b) for b in flags)


def _drop_labels(data: Any) -> Any:
    """Unlabelled data as given: labels (if any) are not used."""
    if isinstance(data, FlowData):
        return replace(data, y=None)
    pair = isinstance(data, (tuple, list)) and len(data) == 2
    if pair and isinstance(data[0], (Tensor, np.ndarray)):
        return data[0]
    return data


def _with_pool(labelled: FlowData, pool: FlowData) -> FlowData:
    """Labelled rows and the pool in one set for ActNorm's init (the pool as class 0: at
    initialization the class does not change any activation, since every coupling and prior
    starts without class dependence)."""
    y = torch.cat([labelled.y, torch.zeros(len(pool), dtype=torch.long)])
    return replace(labelled, x=torch.cat([labelled.x, pool.x.to(labelled.x.dtype)]), y=y)


def _clone_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class FlowTrainer:
    """Fit a flowaug model by maximum likelihood (bits/dim) on any Accelerate setup.

    Arguments:
        model: a :class:`~flowaug.flows.base.ConditionalFlow` (Glow, TabularFlow, ...).
        config: a :class:`TrainConfig` (default settings when ``None``).

    After :meth:`fit` the model holds the best validation weights (or the EMA / last weights
    without validation data) and is in eval mode; ``trainer.history`` holds the records.
    """

    _ssl: SemiSupervisedBatches | None = None

    def __init__(self, model: nn.Module, config: TrainConfig | None = None):
        for attr in ("log_prob", "prepare_batch", "bits_per_dim_from_log_prob", "event_shape"):
            if not hasattr(model, attr):
                raise TypeError(
                    f"model must be a flowaug ConditionalFlow (missing `{attr}`), got "
                    f"{type(model).__name__}."
                )
        if config is None:
            config = TrainConfig()
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}.")
        self.model = model
        self.config = config
        self.accelerator = _make_accelerator(config)
        self.history: History | None = None

    # --- data --------------------------------------------------------------------------------
    def _as_data(self, data: Any, name: str, needs_labels: bool = True) -> FlowData:
        levels = getattr(self.model, "levels", None)
        if isinstance(data, FlowData):
            out = data
        else:
            out = as_flow_data(data, levels=levels, allow_unlabelled=True)
        if out.event_shape != tuple(self.model.event_shape):
            raise ValueError(
                f"{name} has samples of shape {list(out.event_shape)} but the model expects "
                f"{list(self.model.event_shape)}; build the model for this data."
            )
        if out.is_discrete and out.levels != levels:
            raise ValueError(
                f"{name} holds integer data with levels={out.levels} but the model was built "
                f"with levels={levels}; build it with levels={out.levels}."
            )
        classes = int(getattr(self.model, "num_classes", 0))
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

    def _split_unlabelled(
        self, train: FlowData, unlabelled: Any
    ) -> tuple[FlowData, FlowData | None]:
        """``(labelled training rows, unlabelled pool or None)``. An unconditional model has no
        use for labels: it trains on every row, and no pool is returned."""
        pool = None if train.y is None else train.unlabelled()
        if unlabelled is not None:
            extra = self._as_data(_drop_labels(unlabelled), "unlabelled", needs_labels=False)
            if extra.is_discrete != train.is_discrete:
                raise ValueError(
                    f"unlabelled holds {extra.x.dtype} data but train holds {train.x.dtype}; "
                    "pass both as integer images with the same levels, or both as floats."
                )
            extra_x = extra.x.to(train.x.dtype)
            pool_x = extra_x if pool is None or not len(pool) else torch.cat([pool.x, extra_x])
            pool = replace(extra, x=pool_x, y=None)
        if pool is None or not len(pool):
            return train, None
        if not int(getattr(self.model, "num_classes", 0)):
            rows = train.x if train.y is None else train.labelled().x
            return replace(train, x=torch.cat([rows, pool.x]), y=None), None
        labelled = train.labelled()
        if not len(labelled):
            raise ValueError(
                "train has no labelled rows but the model is class-conditional; give some "
                "labelled examples, or fit an unconditional model (num_classes=None)."
            )
        prior = self.config.class_prior
        if isinstance(prior, list) and len(prior) != self.model.num_classes:
            raise ValueError(
                f"class_prior has {len(prior)} entries but the model has "
                f"{self.model.num_classes} classes; give one per class."
            )
        return labelled, pool

    def _lr(self, step: int) -> float:
        cfg = self.config
        scale = min(1.0, (step + 1) / (cfg.warmup_steps + 1))
        if cfg.schedule == "cosine" and cfg.max_steps > cfg.warmup_steps:
            progress = min(
                1.0, max(0.0, (step - cfg.warmup_steps) / (cfg.max_steps - cfg.warmup_steps))
            )
            scale *= cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (
                1 + math.cos(math.pi * progress)
            )
        return cfg.lr * scale

    def _optimizer(self) -> torch.optim.Optimizer:
        decay, no_decay = [], []
        for p in self.model.parameters():
            if p.requires_grad:
                (decay if p.dim() >= 2 else no_decay).append(p)
        groups = [
            {"params": decay, "weight_decay": self.config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=self.config.lr)

    # --- main loop ---------------------------------------------------------------------------
    def fit(
        self,
        train: Any,
        val: Any = None,
        *,
        unlabelled: Any = None,
        resume_from: str | os.PathLike | None = None,
    ) -> History:
        """Train on ``train``, validating on ``val``; returns the :class:`History`.

        Args:
            train: anything :func:`flowaug.data.as_flow_data` accepts (tensors, arrays, a torch
                Dataset of ``(image, label)``, a ``datasets.Dataset``); integer images are
                dequantized with fresh noise every batch. Rows labelled ``-1`` (or
                ``(image, None)``) are unlabelled.
            val: validation data, scored with fixed dequantization noise so that evaluations
                compare; drives best-weights restore and early stopping. With unlabelled data,
                the flow's classification accuracy on it is recorded too (``val_accuracy``).
            unlabelled: more unlabelled examples (any form ``train`` takes; labels, if any, are
                ignored). A class-conditional model learns from them through its own class
                posterior (``config.semi_supervised``, see :mod:`flowaug.semi_supervised`); an
                unconditional one simply trains on them too.
            resume_from: a checkpoint folder, or ``"latest"`` for the newest complete one in
                ``output_dir/checkpoints`` (a fresh start when there is none). A damaged
                checkpoint (a file missing or not matching its hash) is refused, naming the
                newest intact one to pass instead.

        Raises:
            NonFiniteLossError: ``max_bad_steps`` consecutive non-finite steps.
            ValueError: the checkpoint to resume from is damaged, or of other settings.
        """
        devices = []
        if self.accelerator.device.type == "cuda":
            devices = [self.accelerator.device.index or 0]
        with torch.random.fork_rng(devices=devices):
            try:
                return self._fit(train, val, unlabelled, resume_from)
            finally:
                # free_memory collects garbage (1-2 s): only worth it for accelerator memory
                if self.accelerator.device.type != "cpu":
                    self.accelerator.free_memory()

    def _fit(
        self, train: Any, val: Any, unlabelled: Any, resume_from: str | os.PathLike | None
    ) -> History:
        cfg, acc, model = self.config, self.accelerator, self.model
        train_data, pool = self._split_unlabelled(self._as_data(train, "train"), unlabelled)
        val_data = None if val is None else self._as_data(val, "val").labelled()
        if val_data is not None and not len(val_data):
            val_data = None
        world, rank = acc.num_processes, acc.process_index
        n = len(train_data) + (0 if pool is None else len(pool))
        if cfg.batch_size % world:
            raise ValueError(
                f"batch_size={cfg.batch_size} must divide by the number of processes ({world})."
            )
        if cfg.batch_size > n:
            raise ValueError(
                f"batch_size={cfg.batch_size} exceeds the {n} training samples; use a "
                "batch_size <= the training set size."
            )
        steps_per_epoch = n // cfg.batch_size
        local = cfg.batch_size // world
        levels = getattr(model, "levels", None) if train_data.is_discrete else None
        self._ssl = None
        if pool is not None:
            self._ssl = SemiSupervisedBatches(
                train_data.x,
                train_data.y,
                pool.x,
                model.num_classes,
                cfg,
                lambda x, gen: prepare_batch(model, x, gen),
            )

        state = _RunState()
        root = self._checkpoint_root()
        if resume_from is None and cfg.checkpoint_every is not None and root is not None:
            earlier = list_checkpoints(root)
            if earlier:
                raise ValueError(
                    f"{root} holds checkpoints of an earlier run (up to {earlier[-1].name}); "
                    "pass resume_from='latest' to continue it, or use another output_dir (or "
                    "delete that folder) to start afresh."
                )
        checkpoint = self._find_checkpoint(resume_from)
        if checkpoint is not None:
            state = self._load_checkpoint(checkpoint, n)
        elif _needs_initialization(model):
            self._initialize(train_data if pool is None else _with_pool(train_data, pool))

        objective = _NLLObjective(model, levels)
        optimizer = self._optimizer()
        objective, optimizer = acc.prepare(objective, optimizer)
        if checkpoint is not None:
            self._load_optimizer(optimizer, checkpoint)
        # averaged and best weights live where the model now lives (after prepare)
        if cfg.ema_decay is None:
            state.ema = None
        elif state.ema is None:
            state.ema = _clone_state(model)
        for attr in ("ema", "best"):
            tensors = getattr(state, attr)
            if tensors is not None:
                setattr(state, attr, {k: v.to(acc.device) for k, v in tensors.items()})
        val_loader, val_levels = None, None
        if val_data is not None:
            val_loader = self._val_loader(val_data)
            val_levels = getattr(model, "levels", None) if val_data.is_discrete else None

        from tqdm.auto import tqdm

        bar = tqdm(
            total=cfg.max_steps,
            initial=state.step,
            disable=not (cfg.progress and acc.is_main_process),
            desc="flowaug fit",
            dynamic_ncols=True,
        )
        start = time.perf_counter() - state.elapsed
        x_all, y_all = train_data.x, train_data.y
        perm, perm_epoch = None, -1
        objective.train()
        interrupted: KeyboardInterrupt | None = None
        restore_sigterm = raise_on_sigterm()
        try:
            while state.step < cfg.max_steps and not state.stopped_early:
                step = state.step
                epoch, pos = divmod(step, steps_per_epoch)
                weights = None
                if self._ssl is not None:
                    if self._ssl.needs_refresh(step):
                        self._ssl.refresh(model, step, acc.device, cfg.eval_batch_size)
                    x_raw, y_global, weights = self._ssl.batch(step)
                else:
                    if epoch != perm_epoch:
                        perm = torch.randperm(n, generator=generator(cfg.seed, "order", epoch))
                        perm_epoch = epoch
                    batch = perm[pos * cfg.batch_size : (pos + 1) * cfg.batch_size]
                    x_raw, y_global = x_all[batch], None if y_all is None else y_all[batch]
                # the noise of the whole global batch, then this process's slice: the same
                # numbers whatever the number of processes
                x = prepare_batch(model, x_raw, generator(cfg.seed, "noise", step))
                x = x[rank * local : (rank + 1) * local].to(acc.device)
                y = None if y_global is None else y_global[rank * local : (rank + 1) * local]
                y = None if y is None else y.to(acc.device)
                for group in optimizer.param_groups:
                    group["lr"] = self._lr(step)
                torch.manual_seed(stream_seed(cfg.seed, "dropout", step, rank))

                with acc.autocast():
                    bpd = objective(x, y)
                    if weights is None:
                        loss = bpd.mean()
                    else:  # the weighted mean over the global batch, whatever the processes
                        local_w = weights[rank * local : (rank + 1) * local].to(bpd.device)
                        loss = (bpd * local_w).sum() * world / weights.sum().clamp_min(1e-12)
                acc.backward(loss)
                max_norm = cfg.grad_clip if cfg.grad_clip is not None else float("inf")
                grad_norm = acc.clip_grad_norm_(objective.parameters(), max_norm)
                mean_loss = float(acc.reduce(loss.detach().float(), "mean"))
                finite_grad = grad_norm is None or bool(torch.isfinite(grad_norm))
                if math.isfinite(mean_loss) and finite_grad:
                    optimizer.step()
                    state.consecutive_bad = 0
                    state.train_sum += mean_loss
                    state.train_count += 1
                    self._update_ema(state)
                elif cfg.mixed_precision == "fp16" and math.isfinite(mean_loss):
                    optimizer.step()  # the grad scaler skips the update and lowers its scale
                else:
                    state.bad_steps += 1
                    state.consecutive_bad += 1
                    if state.consecutive_bad >= cfg.max_bad_steps:
                        raise NonFiniteLossError(
                            f"step {step}: {state.consecutive_bad} consecutive steps with a "
                            f"non-finite loss or gradient (loss={mean_loss}); lower lr, set "
                            "grad_clip, or check the data and model for NaN/inf."
                        )
                optimizer.zero_grad(set_to_none=True)
                state.step = step + 1
                bar.update(1)
                if state.step % 10 == 0 and math.isfinite(mean_loss):
                    bar.set_postfix(bpd=f"{mean_loss:.3f}", refresh=False)

                if state.step % cfg.eval_every == 0 or state.step == cfg.max_steps:
                    record = self._evaluate(state, val_loader, val_levels, start, epoch)
                    if record.get("val_bpd") is not None:
                        bar.set_postfix(
                            bpd=f"{mean_loss:.3f}", val=f"{record['val_bpd']:.3f}", refresh=False
                        )
                if cfg.checkpoint_every is not None and state.step % cfg.checkpoint_every == 0:
                    state.elapsed = time.perf_counter() - start
                    self._save_checkpoint(state, optimizer, n)
                if cfg.max_time is not None and self._out_of_time(start):
                    if not (state.step % cfg.eval_every == 0 or state.step == cfg.max_steps):
                        self._evaluate(state, val_loader, val_levels, start, epoch)
                    break
        except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: keep what was learned so far
            interrupted = err
        finally:
            bar.close()
            restore_sigterm()

        if state.best is not None:
            model.load_state_dict(state.best)
        elif state.ema is not None:
            model.load_state_dict(state.ema)
        model.eval()
        self.history = self._history(state)
        if interrupted is not None:
            self.history.interrupted = signum_of(interrupted)
        if cfg.output_dir is not None and acc.is_main_process:
            from flowaug.io import save_model

            Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
            self.history.save(Path(cfg.output_dir) / "history.json")
            save_model(model, cfg.output_dir)  # the weights it ends with: flowaug.load(dir)
            # what writes killed in an earlier run of this output_dir left behind
            clear_stale_temporaries(cfg.output_dir, ["history.json"])
            clear_stale_checkpoints(self._checkpoint_root())
        if interrupted is not None:  # no wait_for_everyone: the other ranks may be gone
            raise TrainingInterrupted(
                self.history.interrupted, self.history, cfg.output_dir
            ) from interrupted
        acc.wait_for_everyone()
        return self.history

    @torch.no_grad()
    def _initialize(self, data: FlowData) -> None:
        """ActNorm data-dependent init from a seeded batch of the full training set.

        Every process draws the same batch and noise, so every process computes the same
        parameters before ``prepare`` (DDP then also broadcasts rank 0's).
        """
        cfg, model = self.config, self.model
        count = min(cfg.init_batch_size, len(data))
        index = torch.randperm(len(data), generator=generator(cfg.seed, "init"))[:count]
        x = prepare_batch(model, data.x[index], generator(cfg.seed, "init-noise"))
        y = None if data.y is None else data.y[index].to(model.device)
        model.initialize(x.to(model.device), y)

    def _update_ema(self, state: _RunState) -> None:
        if state.ema is None:
            return
        decay = self.config.ema_decay
        with torch.no_grad():
            for name, value in self.model.state_dict().items():
                avg = state.ema[name]
                if avg.is_floating_point():
                    avg.mul_(decay).add_(value.to(avg.device), alpha=1 - decay)
                else:
                    avg.copy_(value)

    def _out_of_time(self, start: float) -> bool:
        """Whether ``max_time`` has passed, decided identically on every process."""
        over = torch.tensor(float(time.perf_counter() - start >= self.config.max_time))
        if self.accelerator.num_processes > 1:
            over = self.accelerator.reduce(over.to(self.accelerator.device), "max").cpu()
        return bool(over > 0)

    def _val_loader(self, data: FlowData):
        # fixed dequantization noise: evaluations differ only through the weights; eval mode
        # so that training-only input noise (e.g. TabularFlow's noise_std) stays off
        was_training = self.model.training
        self.model.eval()
        try:
            x = prepare_batch(self.model, data.x, generator(self.config.seed, "val-noise"))
        finally:
            self.model.train(was_training)
        y = torch.zeros(len(data), dtype=torch.long) if data.y is None else data.y
        dataset = torch.utils.data.TensorDataset(x.cpu(), y)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=self.config.eval_batch_size, shuffle=False
        )
        return self.accelerator.prepare_data_loader(loader, device_placement=True)

    @torch.no_grad()
    def _evaluate(
        self, state: _RunState, loader: Any, levels: int | None, start: float, epoch: int
    ) -> dict[str, Any]:
        cfg, acc, model = self.config, self.accelerator, self.model
        val_bpd = val_accuracy = None
        if loader is not None:
            raw = _clone_state(model) if state.ema is not None else None
            if raw is not None:
                model.load_state_dict(state.ema)
            model.eval()
            try:
                scores, hits = [], []
                for x, y in loader:
                    labels = y if getattr(model, "num_classes", 0) else None
                    with acc.autocast():
                        log_prob = model.log_prob(x, labels).float()
                        if self._ssl is not None:  # the flow's own Bayes classifier
                            pred = model.class_log_prob(x).argmax(1)
                            hits.append(acc.gather_for_metrics((pred == y).float()))
                    bpd = model.bits_per_dim_from_log_prob(log_prob, levels)
                    scores.append(acc.gather_for_metrics(bpd))
                val_bpd = float(torch.cat(scores).mean())
                val_accuracy = float(torch.cat(hits).mean()) if hits else None
                improved = math.isfinite(val_bpd) and (
                    state.best_val is None or val_bpd < state.best_val - cfg.min_delta
                )
                if improved:
                    state.best_val, state.best_step = val_bpd, state.step
                    state.best = _clone_state(model)
                    state.evals_since_best = 0
                else:
                    state.evals_since_best += 1
                    if cfg.patience is not None and state.evals_since_best >= cfg.patience:
                        state.stopped_early = True
            finally:
                if raw is not None:
                    model.load_state_dict(raw)
                model.train()
        record = {
            "step": state.step,
            "epoch": epoch,
            "train_bpd": state.train_sum / state.train_count if state.train_count else None,
            "val_bpd": val_bpd,
            "lr": self._lr(state.step - 1),
            "time": round(time.perf_counter() - start, 3),
            "bad_steps": state.bad_steps,
        }
        if self._ssl is not None:
            record["val_accuracy"] = val_accuracy
            record["class_prior"] = [round(float(v), 6) for v in self._ssl.prior]
        state.records.append(record)
        state.train_sum, state.train_count = 0.0, 0
        if cfg.output_dir is not None and acc.is_main_process:
            Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
            self._history(state).save(Path(cfg.output_dir) / "history.json")
        return record

    @staticmethod
    def _history(state: _RunState) -> History:
        return History(
            records=list(state.records),
            best_step=state.best_step,
            best_val_bpd=state.best_val,
            stopped_early=state.stopped_early,
            bad_steps=state.bad_steps,
            steps=state.step,
        )

    # --- checkpoints -------------------------------------------------------------------------
    def _checkpoint_root(self) -> Path | None:
        out = self.config.output_dir
        return None if out is None else Path(out) / "checkpoints"

    def _find_checkpoint(self, resume_from: str | os.PathLike | None) -> Path | None:
        if resume_from is None:
            return None
        if str(resume_from) != "latest":
            path = Path(resume_from)
            if not (path / "trainer_state.json").is_file():
                raise FileNotFoundError(
                    f"resume_from={str(resume_from)!r} is not a complete checkpoint (no "
                    "trainer_state.json); pass a folder under output_dir/checkpoints or 'latest'."
                )
            check_intact(path, "resume_from: the checkpoint")
            return path
        root = self._checkpoint_root()
        if root is None:
            raise ValueError("resume_from='latest' needs config.output_dir to look in.")
        found = latest_checkpoint(root)
        if found is not None:
            check_intact(found, "resume_from='latest': the newest checkpoint")
        return found

    def _save_checkpoint(self, state: _RunState, optimizer: Any, n: int) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        root = self._checkpoint_root()
        if acc.is_main_process:
            root.mkdir(parents=True, exist_ok=True)
            final = root / f"step_{state.step:08d}"
            clear_stale_checkpoints(root)
            tmp = root / f".tmp-{final.name}-{os.getpid()}"
            tmp.mkdir()
            hashes = {
                "model.safetensors": save_tensors(
                    self.model.state_dict(), tmp / "model.safetensors"
                )
            }
            hashes["optimizer.safetensors"] = save_tensors(
                flatten_optimizer_state(optimizer.state_dict()), tmp / "optimizer.safetensors"
            )
            extra = {}
            ssl = None if self._ssl is None else self._ssl.state_tensors()
            for prefix, tensors in (("ema.", state.ema), ("best.", state.best), ("ssl.", ssl)):
                extra.update({prefix + k: v for k, v in (tensors or {}).items()})
            hashes["extra.safetensors"] = save_tensors(extra, tmp / "extra.safetensors")
            meta = state.to_json()
            meta.update(
                config=self.config.to_dict(),
                num_train=n,
                model_config=getattr(self.model, "config", None),
                sha256=hashes,
            )
            # trainer_state.json last: a folder without it is never taken for a checkpoint
            atomic_write_bytes(tmp / "trainer_state.json", json.dumps(meta, indent=1).encode())
            if final.exists():
                discard_checkpoint(final)
            os.replace(tmp, final)
            for old in list_checkpoints(root)[: -self.config.keep_checkpoints]:
                discard_checkpoint(old)
        acc.wait_for_everyone()

    def _load_checkpoint(self, path: Path, n: int) -> _RunState:
        meta = read_trainer_state(path)
        saved = meta.get("config", {})
        defaults = TrainConfig(output_dir=self.config.output_dir).to_dict()
        changed = _changes(saved, self.config.to_dict(), _RESUMABLE_CHANGES, defaults)
        if changed:
            raise ValueError(
                f"checkpoint {path} was written with other settings than this run has: "
                f"{', '.join(changed)}; resume with the same settings (only "
                f"{', '.join(sorted(_RESUMABLE_CHANGES))} may change) or start a fresh "
                "output_dir."
            )
        diff = _changes(meta.get("model_config"), getattr(self.model, "config", None))
        if "model_config" in meta and diff:
            raise ValueError(
                f"checkpoint {path} is of a model built differently ({', '.join(diff)}); "
                "resume into a model built with the same arguments."
            )
        if meta.get("num_train") != n:
            raise ValueError(
                f"checkpoint {path} was trained on {meta.get('num_train')} samples, this run "
                f"has {n}; resume with the same training data."
            )
        hashes = meta.get("sha256", {})
        what = f"checkpoint {path}"
        weights = load_tensors(path / "model.safetensors", hashes.get("model.safetensors"), what)
        try:
            self.model.load_state_dict(weights, strict=True)
        except RuntimeError as err:
            raise ValueError(f"{what} does not fit this model ({err}).") from err
        extra = load_tensors(path / "extra.safetensors", hashes.get("extra.safetensors"), what)
        state = _RunState.from_json(meta)
        for prefix, attr in (("ema.", "ema"), ("best.", "best")):
            part = {k[len(prefix) :]: v for k, v in extra.items() if k.startswith(prefix)}
            setattr(state, attr, part or None)
        if self._ssl is not None:
            self._ssl.load_state_tensors(
                {k[4:]: v for k, v in extra.items() if k.startswith("ssl.")}
            )
        return state

    def _load_optimizer(self, optimizer: Any, path: Path) -> None:
        meta = read_trainer_state(path)
        flat = load_tensors(
            path / "optimizer.safetensors",
            meta.get("sha256", {}).get("optimizer.safetensors"),
            f"checkpoint {path}",
        )
        current = optimizer.state_dict()
        optimizer.load_state_dict(
            {"state": unflatten_optimizer_state(flat), "param_groups": current["param_groups"]}
        )


@dataclass
class _RunState:
    """Everything a resumed run needs besides weights and optimizer moments."""

    step: int = 0
    bad_steps: int = 0
    consecutive_bad: int = 0
    train_sum: float = 0.0
    train_count: int = 0
    best_val: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    stopped_early: bool = False
    elapsed: float = 0.0
    records: list[dict[str, Any]] = field(default_factory=list)
    ema: dict[str, Tensor] | None = None
    best: dict[str, Tensor] | None = None

    _JSON = (
        "step",
        "bad_steps",
        "consecutive_bad",
        "train_sum",
        "train_count",
        "best_val",
        "best_step",
        "evals_since_best",
        "stopped_early",
        "elapsed",
        "records",
    )

    def to_json(self) -> dict[str, Any]:
        return {k: copy.deepcopy(getattr(self, k)) for k in self._JSON}

    @classmethod
    def from_json(cls, meta: dict[str, Any]) -> _RunState:
        return cls(**{k: meta[k] for k in cls._JSON if k in meta})


# TrainConfig fields a resumed run may change: they do not shape the weights' trajectory
_RESUMABLE_CHANGES = frozenset(
    {"progress", "output_dir", "checkpoint_every", "keep_checkpoints", "max_time", "cpu"}
)


def _changes(
    saved: Any, now: Any, ignore: frozenset[str] = frozenset(), defaults: dict | None = None
) -> list[str]:
    """``"key=saved -> now"`` for every key whose value differs between a JSON-read dict
    (``saved``) and a live one (``now``, compared as it would read back), ``ignore`` aside.
    A key that ``saved`` lacks (written by an older version) counts as its ``defaults`` value."""
    saved, now = dict(saved or {}), json.loads(json.dumps(now or {}))
    for key, value in json.loads(json.dumps(defaults or {})).items():
        saved.setdefault(key, value)
    keys = sorted((set(saved) | set(now)) - ignore)
    return [f"{k}={saved.get(k)!r} -> {now.get(k)!r}" for k in keys if saved.get(k) != now.get(k)]


# --- one call from data to a model ----------------------------------------------------------


def build_model(data: FlowData, num_samples: int | None = None, **model_kwargs: Any) -> nn.Module:
    """A model with defaults suited to ``data``: Glow for images, TabularFlow for features.

    ``num_samples`` is the number of training examples the defaults are for (default:
    ``len(data)``; more when unlabelled examples join); ``model_kwargs`` override the defaults
    (e.g. ``depth``, ``hidden``, ``dropout``).
    """
    if data.is_image:
        from flowaug.flows.glow import Glow

        _, h, w = data.event_shape
        small = (len(data) if num_samples is None else num_samples) < 5000
        kwargs: dict[str, Any] = dict(
            depth=8 if max(h, w) <= 16 else 12,
            hidden=64 if max(h, w) <= 16 else 128,
            dropout=0.2 if small else 0.0,
            levels=data.levels or 256,
        )
        kwargs.update(model_kwargs)
        return Glow(data.event_shape, num_classes=data.num_classes, **kwargs)
    if len(data.event_shape) == 1:
        TabularFlow = _tabular_flow_class()
        return TabularFlow(data.event_shape[0], data.num_classes, **model_kwargs)
    raise ValueError(
        f"cannot pick a model for samples of shape {list(data.event_shape)}; pass images "
        "[N, C, H, W] or features [N, F]."
    )


def _tabular_flow_class():
    try:
        from flowaug.flows.tabular import TabularFlow
    except ImportError as err:
        raise ImportError(
            "tabular data needs flowaug.flows.tabular.TabularFlow, which this installation "
            f"lacks ({err})."
        ) from err
    return TabularFlow


def default_config(num_train: int, seed: int = 0, **overrides: Any) -> TrainConfig:
    """Training defaults for ``num_train`` samples.

    Small data sets overfit within a few epochs, so evaluation is frequent (about once per
    epoch), early stopping patient enough to ride out noise (5 validations) yet able to end
    a run that overfits well before ``max_steps``, and the run short.
    """
    if isinstance(num_train, bool) or not isinstance(num_train, int) or num_train < 1:
        raise ValueError(f"num_train must be an int >= 1 (training samples), got {num_train!r}.")
    batch = int(min(num_train, 64, max(8, num_train // 8)))  # never more than the data holds
    per_epoch = max(1, num_train // batch)
    small = num_train < 5000
    settings: dict[str, Any] = dict(
        batch_size=batch,
        lr=2e-3 if small else 1e-3,
        weight_decay=1e-3 if small else 1e-4,
        max_steps=int(min(20_000, max(500, 40 * per_epoch))),
        warmup_steps=min(200, 3 * per_epoch),
        eval_every=max(25, per_epoch),
        # 5 validations (>= 125 steps): the EMA-smoothed curve of a small set rises steadily
        # once it overfits; 10 could not stop a 500-step run whose best was past step 250
        patience=5,
        ema_decay=0.99 if small else 0.999,
        seed=seed,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def train_val_split(data: FlowData, fraction: float, seed: int = 0) -> tuple[FlowData, FlowData]:
    """Hold out ``fraction`` of ``data``, stratified by class when every class allows it."""
    train_idx, val_idx = split_index(data, fraction, seed)
    return data.subset(train_idx), data.subset(val_idx)


def split_index(data: FlowData, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The sorted row indices ``(train, held out)`` of :func:`train_val_split`."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(data))
    labels = None if data.y is None else data.y.numpy()
    stratify = labels
    if labels is not None:
        counts = np.bincount(labels)
        if counts[counts > 0].min() < 2 or round(fraction * len(data)) < len(np.unique(labels)):
            stratify = None
    train_idx, val_idx = train_test_split(
        index, test_size=fraction, random_state=seed, stratify=stratify
    )
    return np.sort(train_idx), np.sort(val_idx)


def fit(
    data: Any,
    *,
    unlabelled: Any = None,
    init: Any = None,
    val: Any = None,
    val_fraction: float = 0.1,
    config: TrainConfig | None = None,
    seed: int = 0,
    **model_kwargs: Any,
) -> nn.Module:
    """One call from data to a trained model.

    Args:
        data: images or features in any form :func:`flowaug.data.as_flow_data` accepts, or a
            pandas DataFrame (handed to ``TabularFlow.from_frame(df, **model_kwargs)``, e.g.
            ``label="target", categorical=[...]``). Rows labelled ``-1`` (scikit-learn's
            convention; also ``(image, None)`` items) are unlabelled examples.
        unlabelled: more examples without labels (any form ``data`` takes; labels, if any, are
            not used). A class-conditional flow learns from them through its own class
            posterior (semi-supervised: see :mod:`flowaug.semi_supervised`), which is where
            the accuracy is when labels are few.
        init: a fitted model, or the folder of a saved one, to start from (transfer): an
            unconditional flow fitted on unlabelled images, or a flow fitted on other classes
            (see :func:`flowaug.transfer.transfer_model`); ``model_kwargs`` do not apply.
        val: validation data; by default a stratified ``val_fraction`` of the labelled rows is
            held out.
        val_fraction: held-out share when ``val`` is None (0 trains on everything, without
            best-weights selection or early stopping).
        config: a :class:`TrainConfig`; by default chosen from the data size
            (see :func:`default_config`), with ``seed``.
        seed: seeds the model's initialization, the split and (by default) training.
        model_kwargs: model constructor arguments overriding the defaults
            (e.g. ``depth=4``, ``hidden=32``, ``dropout=0.2``, ``levels=17``).

    Returns:
        the trained model in eval mode, with ``class_names`` set.

    Example:
        >>> from flowaug.data import load_sklearn
        >>> data = load_sklearn("digits").subset(range(100))
        >>> cfg = TrainConfig(batch_size=32, max_steps=2, eval_every=2, progress=False)
        >>> model = fit(data, config=cfg, depth=1, hidden=8)
        >>> model.class_names[:2]
        ['0', '1']
    """
    if not (isinstance(val_fraction, (int, float)) and 0 <= val_fraction < 1):
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}.")
    check_int("seed", seed, minimum=0)
    if _is_data_frame(data):
        return _fit_frame(data, unlabelled, val, val_fraction, config, seed, model_kwargs)
    if init is not None and model_kwargs:
        raise ValueError(
            f"init= starts from a fitted model, whose architecture is fixed; drop "
            f"{sorted(model_kwargs)} or fit without init."
        )
    levels = model_kwargs.get("levels", getattr(init, "levels", None))
    flow_data = as_flow_data(data, levels=levels, allow_unlabelled=True)
    pool = None
    if unlabelled is not None:
        pool = as_flow_data(_drop_labels(unlabelled), levels=flow_data.levels)
    labelled = flow_data.labelled() if flow_data.y is not None else flow_data
    if val is None and val_fraction > 0 and len(labelled) > 1:
        train_data, val_data = train_val_split(labelled, val_fraction, seed)
    else:
        train_data = labelled
        val_data = None if val is None else as_flow_data(val, levels=flow_data.levels)
    if flow_data.y is not None and bool(flow_data.unlabelled_mask.any()):
        rows = flow_data.unlabelled()
        if pool is not None:
            rows = replace(rows, x=torch.cat([rows.x, pool.x.to(rows.x.dtype)]))
        pool = rows
    total = len(train_data) + (0 if pool is None else len(pool))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if init is not None:
            from flowaug.training.transfer import transfer_model

            model = transfer_model(init, flow_data.num_classes, flow_data.class_names)
        else:
            everything = len(labelled) + (0 if pool is None else len(pool))  # val included
            model = build_model(flow_data, num_samples=everything, **model_kwargs)
    config = config or default_config(total, seed=seed)
    FlowTrainer(model, config).fit(train_data, val_data, unlabelled=pool)
    model.class_names = flow_data.class_names
    return model


def _is_data_frame(data: Any) -> bool:
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        return False
    return isinstance(data, pd.DataFrame)


def _fit_frame(
    frame: Any,
    unlabelled: Any,
    val: Any,
    val_fraction: float,
    config: TrainConfig | None,
    seed: int,
    model_kwargs: dict[str, Any],
) -> nn.Module:
    """DataFrames: the tabular flow learns its column encoders, then trains on their output.

    Rows whose label is ``unlabelled_label`` (default ``-1``; a model kwarg) and the rows of an
    ``unlabelled`` DataFrame (same feature columns, label column absent or ignored) shape the
    encoders and enter training as unlabelled examples."""
    from flowaug.columns import unlabelled_rows

    TabularFlow = _tabular_flow_class()
    model_kwargs = dict(model_kwargs)
    marker = model_kwargs.pop("unlabelled_label", -1)
    label = model_kwargs.get("label")
    table = frame
    if unlabelled is not None:
        extra = unlabelled.drop(columns=[label], errors="ignore") if label is not None else (
            unlabelled
        )
        if label is not None:
            extra = extra.assign(**{label: marker})
        table = _concat_frames([frame, extra])
    mask = np.zeros(len(table), dtype=bool)
    if label is not None:
        mask = unlabelled_rows(table[label].to_numpy(), marker, f"the label column {label!r}")
    if mask.any():  # a labelled class stands in for their label while encoders are learned
        values = table[label].to_numpy()
        table = table.assign(**{label: np.where(mask, values[~mask][0], values)})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TabularFlow.from_frame(table, **model_kwargs)
    names = getattr(model, "class_names", None)
    x, y = model.encode_frame(table, seed=seed)
    keep = torch.as_tensor(~mask)
    pool = x[~keep].cpu() if mask.any() else None
    data = as_flow_data((x[keep].cpu(), None if y is None else y[keep].cpu()), class_names=names)
    if val is None and val_fraction > 0:
        train_data, val_data = train_val_split(data, val_fraction, seed)
    else:
        train_data, val_data = data, None
        if val is not None:
            xv, yv = model.encode_frame(val, seed=seed)
            val_data = as_flow_data((xv.cpu(), None if yv is None else yv.cpu()), class_names=names)
    total = len(train_data) + (0 if pool is None else len(pool))
    config = config or default_config(total, seed=seed)
    FlowTrainer(model, config).fit(train_data, val_data, unlabelled=pool)
    if getattr(model, "class_names", None) is None:
        model.class_names = data.class_names
    return model


def _concat_frames(frames: list[Any]) -> Any:
    import pandas as pd

    return pd.concat(frames, ignore_index=True)
