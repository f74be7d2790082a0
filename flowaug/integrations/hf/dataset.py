"""``augment_dataset``: the real rows plus synthetic ones, in one ``datasets.Dataset``."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch
from datasets import ClassLabel, Features
from datasets.exceptions import DatasetGenerationError

from flowaug._checks import check_temperature
from flowaug.flows.base import ConditionalFlow, check_conditional_model
from flowaug.integrations.hf.columns import (
    SYNTHETIC_COLUMN,
    ImageCodec,
    check_column,
    check_columns,
    check_dataset,
    check_ratio,
    fingerprint,
    flagged,
    model_digest,
    no_rows,
    progress_bars,
    unflagged,
)
from flowaug.integrations.hf.rows import RowGenerator
from flowaug.sampling import class_counts
from flowaug.seeding import derive_seed
from flowaug.sizes import check_count_on_disk
from flowaug.tabular.schema import short_names

__all__ = ["augment_dataset"]


def augment_dataset(
    ds: datasets.Dataset,
    model: ConditionalFlow,
    image_column: str = "image",
    label_column: str = "label",
    n_per_class: int | Mapping[int, int] | Sequence[int] | None = None,
    ratio: float | None = None,
    seed: int = 0,
    temperature: float = 0.8,
    batch_size: int = 256,
    filter_threshold: float | None = None,
    progress: bool = True,
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """The real rows plus synthetic rows, with the same ``Features`` and an ``is_synthetic`` column.

    Synthetic rows hold a generated image (``Image`` columns stay ``Image``, arrays keep their
    dtype and layout) and its class (a ``ClassLabel`` stays one), ``None`` in other columns. Real
    rows come first, with ``is_synthetic=False``; a format or transform set on ``ds`` is dropped.
    The synthetic rows are cached under a fingerprint of the model's weights and every argument:
    the same call returns the same rows, and ``save_to_disk`` works on the result. For tables
    (models with ``sample_frame``, e.g. :class:`flowaug.TabularFlow`) ``image_column`` is unused.

    Args:
        ds, model: one split; a trained class-conditional flow of the label column's classes.
        image_column, label_column: the columns (labels: ``ClassLabel`` or integer ``Value``).
        n_per_class: synthetic rows per class (an int, ``{class: n}`` or a list).
        ratio: synthetic rows per real row, per class (default ``1``; keeps the class balance).
        seed, temperature, batch_size: seed, latent noise scale and samples per flow pass.
        filter_threshold: keep only samples whose class posterior under the flow reaches it.
        progress, cache_dir: progress bars; the datasets cache directory (default: its own).

    Returns:
        ``datasets.Dataset`` of ``len(ds) + sum(counts)`` rows, e.g.
        ``augment_dataset(ds, model, n_per_class=100, seed=0)``: 100 more rows per class.
    """
    ds = check_dataset(ds).with_format(None)
    check_column(ds.features, label_column, "label_column")
    if n_per_class is not None and ratio is not None:
        raise ValueError("pass n_per_class or ratio, not both.")
    request = _Request(
        image_column,
        label_column,
        n_per_class,
        1.0 if ratio is None else check_ratio(ratio, positive=False),
        int(seed),
        check_temperature(temperature),
        int(batch_size),
        filter_threshold,
        progress,
        cache_dir,
    )
    make = _tabular_rows if hasattr(model, "sample_frame") else _image_rows
    synthetic = make(ds, model, flagged(ds.features), request)
    if SYNTHETIC_COLUMN not in ds.column_names:
        with progress_bars(progress):
            ds = ds.add_column(SYNTHETIC_COLUMN, [False] * len(ds))
    ds = ds if ds.features == synthetic.features else ds.cast(synthetic.features)
    return datasets.concatenate_datasets([ds, synthetic])


@dataclass(frozen=True)
class _Request:
    """The arguments of :func:`augment_dataset` after validation; its repr (name and fields, in
    this order) is part of the synthetic rows' fingerprint."""

    image_column: str
    label_column: str
    n_per_class: Any
    ratio: float
    seed: int
    temperature: float
    batch_size: int
    filter_threshold: float | None
    progress: bool
    cache_dir: str | None


def _image_counts(ds: datasets.Dataset, classes: int, req: _Request) -> dict[int, int]:
    """Synthetic rows per class: ``n_per_class``, or ``ratio`` times the real rows'."""
    labels = np.asarray(ds.with_format("numpy")[req.label_column])
    if labels.size and labels.max() >= classes:
        raise ValueError(
            f"label column {req.label_column!r} holds class {int(labels.max())} but the model "
            f"has {classes} classes (0..{classes - 1})."
        )
    if req.n_per_class is not None:
        return class_counts(req.n_per_class, classes)
    values, n = np.unique(labels[labels >= 0], return_counts=True)
    return {int(v): round(req.ratio * int(k)) for v, k in zip(values, n, strict=True)}


def _image_rows(
    ds: datasets.Dataset, model: Any, features: Features, req: _Request
) -> datasets.Dataset:
    model = check_conditional_model(model)
    if len(model.event_shape) != 3:
        raise ValueError(
            f"model has event_shape {list(model.event_shape)}, not an image; tabular models need "
            "a sample_frame method (flowaug.TabularFlow)."
        )
    check_columns(ds.features, req.image_column, req.label_column, model.num_classes)
    counts = _image_counts(ds, model.num_classes, req)
    codec = ImageCodec.of(ds, req.image_column, model.event_shape)
    if sum(counts.values()) == 0:  # e.g. ratio=0, the baseline run
        return no_rows(features)
    by_count = req.n_per_class is not None
    check_count_on_disk(
        sum(counts.values()),
        math.prod(model.event_shape),  # about one byte per value once encoded
        req.cache_dir or datasets.config.HF_DATASETS_CACHE,
        "n_per_class" if by_count else "ratio",
        "ask for fewer synthetic rows, or free space in the datasets cache (cache_dir).",
        shown=req.n_per_class if by_count else req.ratio,
    )
    sampling = (req.temperature, req.batch_size, req.filter_threshold)
    rows = RowGenerator(model, codec, features, req.image_column, req.label_column, *sampling)
    key = fingerprint(
        "flowaug.hf.augment_dataset/1",
        model_digest(model),
        sorted(counts.items()),
        req,
        features.to_dict(),
        codec.__dict__,
    )
    with progress_bars(req.progress):
        try:
            return datasets.Dataset.from_generator(
                functools.partial(rows.seeded, counts, req.seed, req.progress),
                features=features,
                cache_dir=req.cache_dir,
                fingerprint=key,
            )
        except DatasetGenerationError as err:
            # our own refusals (e.g. non-finite samples) come through as they were raised
            cause = err.__cause__ or err.__context__
            if isinstance(cause, (ValueError, TypeError)):
                raise cause from err
            raise


def _check_table(ds: datasets.Dataset, model: Any, features: Features, label_column: str) -> None:
    """Refuse a table whose columns are not the model's: its synthetic rows would be NaN in a
    renamed column and lose a missing one."""
    check = getattr(model, "check_frame", None)
    encoder = getattr(model, "encoder", None)
    if check is None or encoder is None:  # another sample_frame model: its own business
        return
    label = encoder.label
    if label is not None and label.name != label_column:
        raise ValueError(
            f"label_column={label_column!r}, but the model's label column is {label.name!r}; "
            "pass the table the model was fitted on, or fit a model on this one."
        )
    frame = ds.select_columns(list(unflagged(features))).to_pandas()
    feature = features[label_column]
    names = list(feature.names) if isinstance(feature, ClassLabel) else None
    by_name = label is not None and all(isinstance(c, str) for c in label.classes)
    if names is not None and by_name:  # string classes: matched by name, as rows are written
        frame[label_column] = [feature.int2str(int(v)) for v in frame[label_column]]
    check(frame, what="the dataset", exact=True)
    known = getattr(model, "class_names", None)
    if names is not None and label is not None and not by_name and known:
        if known != [str(c) for c in label.classes] and list(known) != names[: len(known)]:
            raise ValueError(
                f"label column {label_column!r} names its classes {short_names(names)}, the "
                f"model {short_names(known)}; pass the table the model was fitted on, or fit a "
                "model on this one."
            )


def _sample_frame(model: Any, n_per_class: Any, temperature: float, seed: int) -> Any:
    """``model.sample_frame``, seeded by its ``seed`` argument or else torch's global RNG."""
    params = inspect.signature(model.sample_frame).parameters
    kwargs: dict[str, Any] = {"temperature": temperature} if "temperature" in params else {}
    if "seed" in params:
        return model.sample_frame(n_per_class, **kwargs, seed=int(seed))
    with torch.random.fork_rng():
        torch.manual_seed(derive_seed(seed))
        return model.sample_frame(n_per_class, **kwargs)


def _tabular_rows(
    ds: datasets.Dataset, model: Any, features: Features, req: _Request
) -> datasets.Dataset:
    """The synthetic rows of :func:`~flowaug.integrations.hf.augment_dataset` for a table."""
    label_column = req.label_column
    _check_table(ds, model, features, label_column)
    n_per_class = req.n_per_class
    if n_per_class is None:
        values, counts = np.unique(np.asarray(list(ds[label_column])), return_counts=True)
        n_per_class = {
            v.item(): round(req.ratio * int(n)) for v, n in zip(values, counts, strict=True)
        }
    wanted = n_per_class.values() if isinstance(n_per_class, Mapping) else [n_per_class]
    if all(isinstance(n, (int, np.integer)) and n == 0 for n in wanted):
        return no_rows(features)
    frame = _sample_frame(model, n_per_class, req.temperature, req.seed)
    if label_column not in frame.columns:
        raise ValueError(
            f"model.sample_frame returned columns {list(frame.columns)} without the label column "
            f"{label_column!r}; fit the model with label={label_column!r}."
        )
    n = len(frame)
    mapping = {
        name: (frame[name].tolist() if name in frame.columns else [None] * n)
        for name in features
        if name != SYNTHETIC_COLUMN
    }
    feature = features[label_column]
    if isinstance(feature, ClassLabel):
        mapping[label_column] = [
            feature.str2int(v) if isinstance(v, str) else int(v) for v in mapping[label_column]
        ]
    mapping[SYNTHETIC_COLUMN] = [True] * n
    return datasets.Dataset.from_dict(mapping, features=features)
