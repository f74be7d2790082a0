"""The streaming path: an ``IterableDataset`` of synthetic rows, alone or mixed with real ones."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import datasets
import torch
from datasets import ClassLabel, Features
from torch import Tensor

from flowaug._checks import check_temperature
from flowaug.flows.base import ConditionalFlow, check_conditional_model
from flowaug.integrations.hf.columns import (
    PIL_MODES,
    SYNTHETIC_COLUMN,
    ImageCodec,
    check_columns,
    check_ratio,
    fingerprint,
    flagged,
    model_digest,
    unflagged,
)
from flowaug.integrations.hf.rows import RowGenerator
from flowaug.seeding import derive_seed

__all__ = ["interleave_synthetic", "synthetic_iterable_dataset"]


def synthetic_iterable_dataset(
    model: ConditionalFlow,
    features: Features | None = None,
    image_column: str = "image",
    label_column: str = "label",
    seed: int = 0,
    temperature: float = 0.8,
    batch_size: int = 64,
    num_samples: int | None = None,
    class_weights: Sequence[float] | None = None,
    filter_threshold: float | None = None,
    num_shards: int = 1,
    mark_synthetic: bool = True,
) -> datasets.IterableDataset:
    """A stream of synthetic rows: endless by default, to interleave with real data.

    Args:
        model: a trained class-conditional image flow.
        features: the real dataset's ``Features`` (so rows match it: ``Image`` or arrays,
            ``ClassLabel``); default ``{image: Image(), label: ClassLabel(num_classes=K)}``.
        image_column, label_column: column names.
        seed: seed of the stream; shard ``i`` uses ``derive_seed(seed, i)``.
        temperature, batch_size: latent noise scale; samples per flow pass.
        num_samples: total rows (``None``: endless).
        class_weights: relative frequency of each class (``None``: uniform).
        filter_threshold: class-posterior filter (see :class:`flowaug.SyntheticBank`).
        num_shards: independent shards, so DataLoader workers each get their own.
        mark_synthetic: add an ``is_synthetic=True`` column.

    Returns:
        ``datasets.IterableDataset``, e.g. for ``interleave_datasets([real, synthetic],
        probabilities=[0.7, 0.3], seed=0)`` (or use :func:`interleave_synthetic`).
    """
    model = check_conditional_model(model)
    if len(model.event_shape) != 3:
        raise ValueError(
            f"synthetic_iterable_dataset needs an image model, got {list(model.event_shape)}."
        )
    features = _stream_features(model, features, image_column, label_column, mark_synthetic)
    weights = _class_weights(class_weights, model.num_classes)
    shards = _shards(seed, num_samples, num_shards)
    codec = ImageCodec(features[image_column], None, model.event_shape, image_column)
    sampling = (check_temperature(temperature), int(batch_size), filter_threshold)
    rows = RowGenerator(model, codec, features, image_column, label_column, *sampling)
    return _read_stream(rows, weights, shards, seed, temperature, batch_size, num_samples)


def _stream_features(
    model: ConditionalFlow, features: Features | None, image: str, label: str, mark: bool
) -> Features:
    if features is None:
        mode = PIL_MODES.get(model.event_shape[0])
        features = Features(
            {image: datasets.Image(mode=mode), label: ClassLabel(num_classes=model.num_classes)}
        )
    features = unflagged(features)
    check_columns(features, image, label, model.num_classes)
    return flagged(features) if mark else features


def _class_weights(class_weights: Sequence[float] | None, k: int) -> Tensor:
    if class_weights is None:
        return torch.ones(k)
    weights = torch.as_tensor(class_weights, dtype=torch.float64)
    if weights.shape != (k,) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(
            f"class_weights must be {k} non-negative numbers (one per class), not all zero; got "
            f"{class_weights!r}."
        )
    return weights


def _shards(seed: int, num_samples: int | None, num_shards: int) -> list[tuple[int, int | None]]:
    """Each shard's ``(seed, rows)``: ``derive_seed(seed, i)`` and its share of ``num_samples``
    (``None``: endless)."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}.")
    if num_samples is not None and num_samples < 0:
        raise ValueError(f"num_samples must be >= 0 or None (endless), got {num_samples}.")
    if num_samples is None:
        return [(derive_seed(seed, i), None) for i in range(num_shards)]
    share, extra = divmod(num_samples, num_shards)
    return [(derive_seed(seed, i), share + (i < extra)) for i in range(num_shards)]


def _stream_rows(
    rows: RowGenerator, weights: Tensor, shards: list[tuple[int, int | None]]
) -> Iterator[dict[str, Any]]:
    """Per shard, batches of classes drawn by ``weights`` until its rows are done."""
    for shard_seed, quota in shards:
        generator = torch.Generator().manual_seed(shard_seed)
        made = 0
        while quota is None or made < quota:
            b = rows.batch_size if quota is None else min(rows.batch_size, quota - made)
            y = torch.multinomial(weights, b, replacement=True, generator=generator)
            yield from rows.rows({int(c): int((y == c).sum()) for c in y.unique()}, generator)
            made += b


def _read_stream(
    rows: RowGenerator, weights: Tensor, shards: list, *request: Any
) -> datasets.IterableDataset:
    """The stream of :func:`_stream_rows`, fingerprinted by the model, the features, ``request``
    (seed, temperature, batch_size and num_samples as given) and the other arguments."""
    key = fingerprint(
        "flowaug.hf.synthetic_iterable_dataset/1",
        model_digest(rows.model),
        rows.features.to_dict(),
        *request,
        weights.tolist(),
        rows.filter_threshold,
        len(shards),
    )
    kwargs = {"rows": rows, "weights": weights.float(), "shards": shards}
    try:
        from datasets.io.generator import GeneratorDatasetInputStream

        return GeneratorDatasetInputStream(
            generator=_stream_rows,
            features=rows.features,
            gen_kwargs=kwargs,
            streaming=True,
            fingerprint=key,
        ).read()
    except (ImportError, TypeError):  # older datasets: hashes the model, slower but correct
        return datasets.IterableDataset.from_generator(
            _stream_rows, features=rows.features, gen_kwargs=kwargs
        )


def _mark_real(_: dict[str, Any]) -> dict[str, bool]:
    return {SYNTHETIC_COLUMN: False}


def interleave_synthetic(
    real: datasets.Dataset | datasets.IterableDataset,
    model: ConditionalFlow,
    ratio: float = 0.5,
    seed: int = 0,
    image_column: str = "image",
    label_column: str = "label",
    **stream_kwargs: Any,
) -> datasets.IterableDataset:
    """Stream real rows mixed with synthetic ones: ``ratio`` synthetic rows per real row.

    ``real`` (a Dataset is turned into a stream with ``to_iterable_dataset``) gets
    ``is_synthetic=False``; the stream ends when the real rows run out.

    Args:
        real: the real data.
        model: a trained class-conditional image flow.
        ratio: expected synthetic rows per real row (``> 0``).
        seed: seed of the synthetic rows and of the interleaving.
        **stream_kwargs: passed to :func:`synthetic_iterable_dataset`.
    """
    p = check_ratio(ratio, positive=True) / (1.0 + float(ratio))
    if isinstance(real, datasets.Dataset):
        real = real.with_format(None).to_iterable_dataset()
    if not isinstance(real, datasets.IterableDataset) or real.features is None:
        raise TypeError(
            "real must be a datasets.Dataset or an IterableDataset with known features."
        )
    features = unflagged(real.features)
    if SYNTHETIC_COLUMN not in real.features:
        real = real.map(_mark_real).cast(flagged(features))
    synthetic = synthetic_iterable_dataset(
        model, features, image_column, label_column, seed=seed, **stream_kwargs
    )
    return datasets.interleave_datasets(
        [real, synthetic],
        probabilities=[1.0 - p, p],
        seed=seed,
        stopping_strategy="first_exhausted",
    )
