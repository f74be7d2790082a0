"""The settings of a training run (:class:`TrainConfig`) and the defaults for a data size."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from flowaug._checks import check_int, check_number
from flowaug.training.semi_supervised import SEMI_SUPERVISED_MODES

__all__ = ["LARGE_IMAGE_SIDE", "SMALL_SET", "TrainConfig", "default_config", "is_large_image"]

_CHOICES = {"mixed_precision": ("no", "bf16", "fp16"), "schedule": ("cosine", "constant")}
_POSITIVE_INTS = (
    "batch_size", "max_steps", "eval_every", "eval_batch_size", "keep_checkpoints",
    "max_bad_steps", "init_batch_size",
)  # fmt: skip
# check_number bounds, in the order they are checked; None values are not checked
_NUMBERS: dict[str, dict[str, Any]] = {
    "lr": dict(low=0.0, low_open=True),
    "weight_decay": dict(low=0.0),
    "min_lr_ratio": dict(low=0.0, high=1.0),
    "min_delta": dict(low=0.0),
    "grad_clip": dict(low=0.0, low_open=True),
    "max_time": dict(low=0.0, low_open=True),
    "ema_decay": dict(low=0.0, high=1.0, low_open=True),
}


@dataclass
class TrainConfig:
    """Settings of a :class:`~flowaug.training.FlowTrainer` run.

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
        max_bad_steps: raise :class:`~flowaug.training.NonFiniteLossError` after this many
            consecutive steps with a non-finite loss or gradient (each is skipped: no update).
        init_batch_size: samples in the (seeded) batch used for data-dependent initialization.
        progress: show a tqdm progress bar (main process only).
        cpu: train on CPU even when a GPU is available.
        semi_supervised: how unlabelled examples (``fit(..., unlabelled=...)``, or label -1)
            enter a class-conditional model: ``"marginal"`` (each with a class drawn from the
            flow's posterior: the class-marginal likelihood) or ``"pseudo"`` (only those whose
            posterior reaches ``pseudo_threshold``, with their most probable class). See
            :mod:`flowaug.training.semi_supervised`.
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
            refresh). See :mod:`flowaug.training.semi_supervised` for why uniform is the default.
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
            if isinstance(value, np.generic):
                setattr(self, f.name, value.item())
        for name in ("progress", "cpu", "align_posteriors"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}.")
        if self.output_dir is not None:
            if not isinstance(self.output_dir, (str, os.PathLike)) or not str(self.output_dir):
                raise TypeError(
                    f"output_dir must be a folder path (str or Path) or None, got "
                    f"{self.output_dir!r}."
                )
            self.output_dir = str(self.output_dir)
        for name in _POSITIVE_INTS:
            check_int(name, getattr(self, name), minimum=1)
        check_int("warmup_steps", self.warmup_steps, minimum=0)
        check_int("seed", self.seed, minimum=0)
        for name, minimum in (("patience", 1), ("checkpoint_every", 1), ("refresh_every", 1),
                              ("unlabelled_start", 0)):  # fmt: skip
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), minimum=minimum)
        self._check_semi_supervised()
        for name, bounds in _NUMBERS.items():
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), **bounds)
        if self.ema_decay is not None and self.ema_decay >= 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {self.ema_decay}.")
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}.")
        if self.checkpoint_every is not None and self.output_dir is None:
            raise ValueError(
                "checkpoint_every is set but output_dir is None; give an output_dir to write "
                "checkpoints to."
            )

    def _check_semi_supervised(self) -> None:
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; known: {sorted(known)}.")
        return cls(**values)


#: images with a side above this many pixels train in small batches at a higher learning rate
#: (see :func:`default_config`)
LARGE_IMAGE_SIDE = 16
#: below this many training samples a set is small: it overfits within a few epochs
SMALL_SET = 5000


def is_large_image(event_shape: Sequence[int] | None) -> bool:
    """Whether samples of ``event_shape`` are images ``[C, H, W]`` with a side above
    :data:`LARGE_IMAGE_SIDE` (``None`` or features ``[F]``: no)."""
    return (
        event_shape is not None
        and len(event_shape) == 3
        and max(int(event_shape[1]), int(event_shape[2])) > LARGE_IMAGE_SIDE
    )


def default_config(
    num_train: int, seed: int = 0, event_shape: Sequence[int] | None = None, **overrides: Any
) -> TrainConfig:
    """Training defaults for ``num_train`` samples (of ``event_shape``, when given).

    Small data sets overfit within a few epochs, so evaluation is frequent (about once per
    epoch), early stopping patient enough to ride out noise (5 validations) yet able to end
    a run that overfits well before ``max_steps``, and the run short.

    Images above :data:`LARGE_IMAGE_SIDE` pixels (28x28, 32x32) in a small set train in batches
    of 16 at a learning rate of 5e-3: their fits are limited by the number of optimizer steps,
    not by the gradient noise of a batch, so a step that costs a quarter of a 64-image one gets
    there sooner: on 240 RGB 32x32 images, 73 s to 6.03 validation bits/dim, against 211 s
    to 6.32 with batches of 27 at 2e-3 and the wider model ``build_model`` made before. They
    also run for 24 epochs instead of 40: on 1,797 28x28 digits the default fit then takes
    167-179 s (2 threads) to 1.709-1.751 bits/dim over seeds 0-2, under the 1.758 the old
    defaults reached in 11 minutes (40 epochs took 333 s to 1.649 before the faster
    convolutions of :mod:`flowaug.flows.conv`; 2,200 steps ended at 1.764, seed 0).
    ``benchmarks/results/fit_time.md``, ``fit_time_24_epochs.md``.
    """
    check_int("num_train", num_train, minimum=1)
    small = num_train < SMALL_SET
    large_images = small and is_large_image(event_shape)
    most = 16 if large_images else 64
    batch = int(min(num_train, most, max(8, num_train // 8)))  # never more than the data holds
    per_epoch = max(1, num_train // batch)
    settings: dict[str, Any] = dict(
        batch_size=batch,
        lr=5e-3 if large_images else 2e-3 if small else 1e-3,
        weight_decay=1e-3 if small else 1e-4,
        max_steps=int(min(20_000, max(500, (24 if large_images else 40) * per_epoch))),
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
