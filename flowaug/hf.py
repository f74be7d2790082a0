"""Hugging Face ``datasets`` hook: add synthetic rows, on disk, on the fly or as a stream.

- :func:`augment_dataset`: the real rows plus synthetic rows in one ``datasets.Dataset`` with
  the same ``Features`` and an ``is_synthetic`` column; deterministic for a seed.
- :func:`synthetic_transform`: a function for ``Dataset.with_transform`` that replaces a
  fraction of every batch with synthetic samples of the same labels.
- :func:`synthetic_iterable_dataset` / :func:`interleave_synthetic`: an endless (or finite)
  ``IterableDataset`` of synthetic rows to interleave with streamed real data.

For synthetic sets too large for one process, :mod:`flowaug.shards` writes Parquet shards from
every process of a launch and reads them back as one ``datasets.Dataset``.

Images follow torchvision's conventions: ``Image`` columns hold 8-bit PIL images, uint8 arrays
hold ``0..255``, float arrays hold ``[0, 1]``. Tabular datasets work when the model has a
``sample_frame`` method (:class:`flowaug.TabularFlow`).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import PIL.Image
import torch
from datasets import ClassLabel, Features, Value
from datasets.exceptions import DatasetGenerationError
from torch import Tensor

from flowaug._checks import check_probability, check_temperature
from flowaug.augment import FlowAugment
from flowaug.flows.base import ConditionalFlow, check_conditional_model
from flowaug.pixels import model_to_image
from flowaug.sampling import class_counts, iter_synthetic
from flowaug.seeding import WorkerRandomState, derive_seed
from flowaug.sizes import check_count_on_disk
from flowaug.table_schema import short_names

__all__ = [
    "SyntheticTransform",
    "augment_dataset",
    "interleave_synthetic",
    "synthetic_iterable_dataset",
    "synthetic_transform",
]

SYNTHETIC_COLUMN = "is_synthetic"
_PIL_MODES = {1: "L", 3: "RGB"}


# --- columns ----------------------------------------------------------------------------------
def _check_dataset(ds: Any, name: str = "ds") -> datasets.Dataset:
    if isinstance(ds, datasets.DatasetDict):
        raise TypeError(
            f"{name} is a DatasetDict with splits {list(ds)}; pass one split, e.g. {name}['train']."
        )
    if isinstance(ds, datasets.IterableDataset):
        raise TypeError(
            f"{name} is an IterableDataset; use flowaug.hf.interleave_synthetic for streams, or "
            "load it without streaming=True."
        )
    if not isinstance(ds, datasets.Dataset):
        raise TypeError(f"{name} must be a datasets.Dataset, got {type(ds).__name__}.")
    return ds


def _check_column(features: Features, column: str, what: str) -> None:
    if column not in features:
        raise ValueError(
            f"{what}={column!r} is not a column of the dataset; its columns are {list(features)}."
        )


def _leaf_dtype(feature: Any) -> str | None:
    """The value dtype at the bottom of nested list / array features."""
    while True:
        if isinstance(feature, Value):
            return feature.dtype
        if isinstance(feature, (datasets.Array2D, datasets.Array3D)):
            return feature.dtype
        inner = getattr(feature, "feature", None)
        if inner is None:
            return None
        feature = inner


def _layout(shape: tuple[int, ...], image_shape: tuple[int, int, int], column: str) -> str:
    c, h, w = image_shape
    if shape == (c, h, w):
        return "CHW"
    if shape == (h, w, c):
        return "HWC"
    if c == 1 and shape == (h, w):
        return "HW"
    raise ValueError(
        f"column {column!r} holds images of shape {list(shape)}, but the model's image_shape is "
        f"{[c, h, w]}; resize the images or fit a model at this size."
    )


class _ImageCodec:
    """Converts between one image column's values and tensors ``[C, H, W]``.

    Column kinds: ``Image`` (PIL, mode ``L``/``RGB``), ``Array2D``/``Array3D`` and nested lists
    of numbers, in ``CHW``, ``HWC`` or ``HW`` layout, uint8 (``0..255``) or float (``[0, 1]``).
    """

    def __init__(self, feature: Any, example: Any, image_shape: Sequence[int], column: str):
        self.column = column
        self.image_shape = tuple(int(s) for s in image_shape)
        c, h, w = self.image_shape
        if isinstance(feature, datasets.Image):
            self.kind = "pil"
            mode = feature.mode or (example.mode if isinstance(example, PIL.Image.Image) else None)
            self.mode = mode or _PIL_MODES.get(c)
            if self.mode not in _PIL_MODES.values() or {"L": 1, "RGB": 3}[self.mode] != c:
                raise ValueError(
                    f"column {column!r} holds {self.mode!r} images but the model has {c} "
                    f"channel(s); convert the images to {_PIL_MODES.get(c, 'L or RGB')!r} or fit "
                    "a model with matching channels."
                )
            if isinstance(example, PIL.Image.Image) and example.size != (w, h):
                raise ValueError(
                    f"column {column!r} holds images of size {example.size[0]}x"
                    f"{example.size[1]}, but the model's image_shape is {[c, h, w]}; resize the "
                    "images or fit a model at this size."
                )
            self.dtype, self.layout = "uint8", "HWC"
            return
        dtype = _leaf_dtype(feature)
        if dtype is None or not (dtype == "uint8" or dtype.startswith("float")):
            raise TypeError(
                f"column {column!r} must be an Image column or arrays of uint8 (0..255) or float "
                f"([0, 1]) values, got feature {feature}; cast it (e.g. ds.cast_column({column!r}, "
                "datasets.Image())) first."
            )
        self.kind, self.dtype = "array", dtype
        shape = getattr(feature, "shape", None)
        if shape is None and example is None:
            raise ValueError(f"column {column!r} is empty; cannot tell its image layout.")
        if example is not None:
            arr = np.asarray(example)
            shape = arr.shape if shape is None else shape
            if dtype.startswith("float") and arr.size and not (arr.min() >= 0 and arr.max() <= 1):
                raise ValueError(
                    f"column {column!r} holds float values in [{arr.min():.3g}, {arr.max():.3g}]"
                    "; flowaug expects float images in [0, 1]: rescale the column first."
                )
        self.layout = _layout(tuple(int(s) for s in shape), self.image_shape, column)

    def encode(self, images: Tensor) -> list[Any]:
        """Grid values ``[B, C, H, W]`` in ``[0, 1]`` -> column values."""
        if self.kind == "pil" or self.dtype == "uint8":
            images = (images * 255.0).round_().to(torch.uint8)
        else:
            images = images.to(getattr(torch, self.dtype))
        if self.layout == "HWC":
            images = images.permute(0, 2, 3, 1)
        elif self.layout == "HW":
            images = images[:, 0]
        arrays = images.contiguous().numpy()
        if self.kind == "pil":
            if self.mode == "L":
                return [PIL.Image.fromarray(a[..., 0], mode="L") for a in arrays]
            return [PIL.Image.fromarray(a, mode="RGB") for a in arrays]
        return list(arrays)

    def decode(self, value: Any) -> Tensor:
        """One column value -> uint8 or float tensor ``[C, H, W]``."""
        if isinstance(value, PIL.Image.Image):
            x = torch.from_numpy(np.array(value.convert(self.mode), dtype=np.uint8))
            return x[None] if x.ndim == 2 else x.permute(2, 0, 1)
        arr = np.asarray(value)
        if arr.dtype != self.dtype:
            if self.dtype == "uint8" and arr.size and (arr.min() < 0 or arr.max() > 255):
                raise ValueError(
                    f"column {self.column!r} holds values in [{arr.min()}, {arr.max()}], not the "
                    "0..255 of uint8 images; rescale the column first."
                )
            arr = arr.astype(self.dtype)
        x = torch.from_numpy(np.ascontiguousarray(arr))
        if self.layout == "HWC":
            x = x.permute(2, 0, 1)
        elif self.layout == "HW":
            x = x[None]
        return x.contiguous()

    def like(self, new: Tensor, old: Any) -> Any:
        """A tensor ``[C, H, W]`` back to the type of ``old`` (PIL, list, array or tensor)."""
        if isinstance(old, PIL.Image.Image):
            arr = new.permute(1, 2, 0).numpy()
            return PIL.Image.fromarray(arr[..., 0] if old.mode == "L" else arr, mode=old.mode)
        if self.layout == "HWC":
            new = new.permute(1, 2, 0)
        elif self.layout == "HW":
            new = new[0]
        if isinstance(old, Tensor):
            return new.contiguous()
        arr = new.contiguous().numpy()
        return arr if isinstance(old, np.ndarray) else arr.tolist()


def _first_value(ds: datasets.Dataset, column: str) -> Any:
    return ds[0][column] if len(ds) else None


def _label_info(features: Features, label_column: str, num_classes: int) -> None:
    feature = features[label_column]
    if isinstance(feature, ClassLabel):
        if feature.num_classes != num_classes:
            raise ValueError(
                f"label column {label_column!r} has {feature.num_classes} classes "
                f"({feature.names[:5]}...) but the model has {num_classes}; fit the model on this "
                "dataset's labels."
            )
    elif not (isinstance(feature, Value) and "int" in feature.dtype):
        raise TypeError(
            f"label column {label_column!r} must be a ClassLabel or an integer Value, got "
            f"{feature}; encode it with ds.class_encode_column({label_column!r})."
        )


def _label_array(ds: datasets.Dataset, label_column: str) -> np.ndarray:
    return np.asarray(ds.with_format("numpy")[label_column])


def _model_digest(model: torch.nn.Module) -> str:
    """SHA-256 of the model's class, config and weights (cheap next to hashing by pickling)."""
    h = hashlib.sha256(type(model).__qualname__.encode())
    h.update(repr(sorted(getattr(model, "config", {}).items())).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _fingerprint(*parts: Any) -> str:
    return datasets.fingerprint.Hasher.hash([repr(p) for p in parts])


@contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    was_enabled = datasets.is_progress_bar_enabled()
    if not enabled:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled and not enabled:
            datasets.enable_progress_bars()


# --- augment_dataset --------------------------------------------------------------------------
def _encode_rows(
    codec: _ImageCodec,
    x: Tensor,
    y: Tensor,
    empty: dict[str, None],
    image_column: str,
    label_column: str,
    levels: int,
    mark: bool,
) -> Iterator[dict[str, Any]]:
    """Dataset rows for samples ``x [B, C, H, W]`` (model space) of classes ``y [B]``: the
    encoded image (snapped to ``levels`` intensities) and label, ``None`` in other columns,
    and ``is_synthetic=True`` when ``mark``."""
    values = codec.encode(model_to_image(x, levels))
    for value, label in zip(values, y.tolist(), strict=True):
        row = dict(empty)
        row[image_column] = value
        row[label_column] = label
        if mark:
            row[SYNTHETIC_COLUMN] = True
        yield row


class _ImageJob:
    """Everything the row generator needs; kept out of datasets' hashing by the fingerprint."""

    def __init__(self, model, counts, codec, features, image_column, label_column, **kw):
        self.model, self.counts, self.codec, self.features = model, counts, codec, features
        self.image_column, self.label_column = image_column, label_column
        self.kw = kw

    def rows(self, seed: int, progress: bool) -> Iterator[dict[str, Any]]:
        from tqdm.auto import tqdm

        total = sum(self.counts.values())
        empty = {k: None for k in self.features}
        generator = torch.Generator().manual_seed(derive_seed(seed))
        with tqdm(total=total, desc="flowaug: sampling", disable=not progress) as bar:
            for x, y in iter_synthetic(self.model, self.counts, generator=generator, **self.kw):
                yield from _encode_rows(
                    self.codec,
                    x,
                    y,
                    empty,
                    self.image_column,
                    self.label_column,
                    self.model.levels,
                    mark=True,
                )
                bar.update(len(y))


def _generate_rows(job: _ImageJob, seed: int, progress: bool) -> Iterator[dict[str, Any]]:
    yield from job.rows(seed, progress)


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

    Synthetic rows hold a generated image (an ``Image`` column stays ``Image``, arrays stay
    arrays of the same dtype and layout) and its class in the label column (a ``ClassLabel``
    stays a ``ClassLabel``); other columns are ``None``. Real rows come first, with
    ``is_synthetic=False``; any format or transform set on ``ds`` is dropped. The synthetic
    part is written to the datasets cache under a fingerprint of the model's weights and every
    argument, so the same call returns the same rows (from the cache) and ``save_to_disk``
    works on the result.

    For tabular datasets (models with ``sample_frame``, e.g. :class:`flowaug.TabularFlow`),
    ``image_column`` is ignored: the model's columns are filled from its samples.

    Args:
        ds: a ``datasets.Dataset`` (one split).
        model: a trained class-conditional flow whose classes are the label column's values.
        image_column: the image column.
        label_column: the class column (``ClassLabel`` or integer ``Value``).
        n_per_class: synthetic rows per class (an int, ``{class: n}`` or a list); default: as
            many as real rows of each class (``ratio=1``).
        ratio: synthetic rows per real row, per class (keeps the class balance).
        seed: seed of the synthetic rows.
        temperature: latent noise scale.
        batch_size: samples per flow pass.
        filter_threshold: keep only samples whose class posterior under the flow is at least
            this (see :class:`flowaug.SyntheticBank`).
        progress: show progress bars.
        cache_dir: datasets cache directory (default: datasets' own).

    Returns:
        ``datasets.Dataset`` of ``len(ds) + sum(counts)`` rows.

    Example:
        >>> aug = augment_dataset(ds, model, n_per_class=100, seed=0)  # doctest: +SKIP
        >>> aug.filter(lambda r: r["is_synthetic"]).num_rows  # doctest: +SKIP
        1000
    """
    ds = _check_dataset(ds).with_format(None)
    _check_column(ds.features, label_column, "label_column")
    if n_per_class is not None and ratio is not None:
        raise ValueError("pass n_per_class or ratio, not both.")
    if ratio is not None and (
        isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio < 0
    ):
        raise ValueError(
            f"ratio must be a number >= 0 (synthetic rows per real row), got {ratio!r}."
        )
    request = _Request(
        image_column,
        label_column,
        n_per_class,
        1.0 if ratio is None else float(ratio),
        int(seed),
        check_temperature(temperature),
        int(batch_size),
        filter_threshold,
        progress,
        cache_dir,
    )
    base_features = Features({k: v for k, v in ds.features.items() if k != SYNTHETIC_COLUMN})
    features = Features({**base_features, SYNTHETIC_COLUMN: Value("bool")})
    if hasattr(model, "sample_frame"):
        synthetic = _tabular_rows(ds, model, features, request)
    else:
        synthetic = _image_rows(ds, model, features, request)
    real = ds
    if SYNTHETIC_COLUMN not in ds.column_names:
        with progress_bars(progress):
            real = ds.add_column(SYNTHETIC_COLUMN, [False] * len(ds))
    if real.features != features:
        real = real.cast(features)
    return datasets.concatenate_datasets([real, synthetic])


@dataclass(frozen=True)
class _Request:
    """The arguments of :func:`augment_dataset` after validation."""

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


def _image_rows(
    ds: datasets.Dataset, model: Any, features: Features, req: _Request
) -> datasets.Dataset:
    model = check_conditional_model(model)
    if len(model.event_shape) != 3:
        raise ValueError(
            f"model has event_shape {list(model.event_shape)}, not an image; tabular models need "
            "a sample_frame method (flowaug.TabularFlow)."
        )
    _check_column(ds.features, req.image_column, "image_column")
    _label_info(ds.features, req.label_column, model.num_classes)
    labels = _label_array(ds, req.label_column)
    if labels.size and labels.max() >= model.num_classes:
        raise ValueError(
            f"label column {req.label_column!r} holds class {int(labels.max())} but the model "
            f"has {model.num_classes} classes (0..{model.num_classes - 1})."
        )
    if req.n_per_class is not None:
        counts = class_counts(req.n_per_class, model.num_classes)
    else:
        values, n = np.unique(labels[labels >= 0], return_counts=True)
        counts = {int(v): round(req.ratio * int(k)) for v, k in zip(values, n, strict=True)}
    codec = _ImageCodec(
        ds.features[req.image_column],
        _first_value(ds, req.image_column),
        model.event_shape,
        req.image_column,
    )
    if sum(counts.values()) == 0:  # e.g. ratio=0, the baseline run
        return _no_rows(features)
    check_count_on_disk(
        sum(counts.values()),
        math.prod(model.event_shape),  # about one byte per value once encoded
        req.cache_dir or datasets.config.HF_DATASETS_CACHE,
        "n_per_class" if req.n_per_class is not None else "ratio",
        "ask for fewer synthetic rows, or free space in the datasets cache (cache_dir).",
        shown=req.n_per_class if req.n_per_class is not None else req.ratio,
    )
    job = _ImageJob(
        model,
        counts,
        codec,
        features,
        req.image_column,
        req.label_column,
        temperature=req.temperature,
        batch_size=req.batch_size,
        filter_threshold=req.filter_threshold,
    )
    fingerprint = _fingerprint(
        "flowaug.hf.augment_dataset/1",
        _model_digest(model),
        sorted(counts.items()),
        req,
        features.to_dict(),
        codec.__dict__,
    )
    with progress_bars(req.progress):
        try:
            return datasets.Dataset.from_generator(
                functools.partial(_generate_rows, job, req.seed, req.progress),
                features=features,
                cache_dir=req.cache_dir,
                fingerprint=fingerprint,
            )
        except DatasetGenerationError as err:
            # our own refusals (e.g. non-finite samples) come through as they were raised
            cause = err.__cause__ or err.__context__
            if isinstance(cause, (ValueError, TypeError)):
                raise cause from err
            raise


def _no_rows(features: Features) -> datasets.Dataset:
    return datasets.Dataset.from_dict({name: [] for name in features}, features=features)


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
    columns = [name for name in features if name != SYNTHETIC_COLUMN]
    frame = ds.select_columns(columns).to_pandas()
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


def _tabular_rows(
    ds: datasets.Dataset, model: Any, features: Features, req: _Request
) -> datasets.Dataset:
    label_column, seed = req.label_column, req.seed
    feature = ds.features[label_column]
    _check_table(ds, model, features, label_column)
    n_per_class = req.n_per_class
    if n_per_class is None:
        values, counts = np.unique(np.asarray(list(ds[label_column])), return_counts=True)
        n_per_class = {
            v.item(): round(req.ratio * int(n)) for v, n in zip(values, counts, strict=True)
        }
    wanted = n_per_class.values() if isinstance(n_per_class, Mapping) else [n_per_class]
    if all(isinstance(n, (int, np.integer)) and n == 0 for n in wanted):
        return _no_rows(features)
    params = inspect.signature(model.sample_frame).parameters
    kwargs: dict[str, Any] = {}
    if "temperature" in params:
        kwargs["temperature"] = req.temperature
    if "seed" in params:
        kwargs["seed"] = int(seed)
        frame = model.sample_frame(n_per_class, **kwargs)
    else:
        with torch.random.fork_rng():
            torch.manual_seed(derive_seed(seed))
            frame = model.sample_frame(n_per_class, **kwargs)
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
    if isinstance(feature, ClassLabel):
        mapping[label_column] = [
            feature.str2int(v) if isinstance(v, str) else int(v) for v in mapping[label_column]
        ]
    mapping[SYNTHETIC_COLUMN] = [True] * n
    return datasets.Dataset.from_dict(mapping, features=features)


# --- on the fly -------------------------------------------------------------------------------
class SyntheticTransform:
    """A ``Dataset.with_transform`` function replacing a fraction ``p`` of each batch.

    Receives the batch as datasets gives it (a dict of lists, also for ``ds[0]``) and returns it
    with a random fraction ``p`` of the images replaced by synthetic images of the same labels,
    each of the same type as the one it replaces (PIL, list, array or tensor). Made by
    :func:`synthetic_transform`; picklable for DataLoader workers.
    """

    def __init__(
        self,
        model: ConditionalFlow,
        p: float = 0.5,
        image_column: str = "image",
        label_column: str | None = "label",
        mark_column: str | None = None,
        features: Features | None = None,
        **augment_kwargs: Any,
    ):
        p = check_probability(p)
        self.augment = FlowAugment(model, p=1.0, **augment_kwargs)
        self.p = float(p)
        self.image_column = image_column
        self.label_column = label_column
        self.mark_column = mark_column
        self.features = features
        seed = augment_kwargs.get("seed")
        # its own stream: the same seed as the bank draws would correlate "which rows" with
        # "which samples"
        self._rng = WorkerRandomState(None if seed is None else derive_seed(seed, 1))
        self._codec: _ImageCodec | None = None

    def _codec_for(self, example: Any) -> _ImageCodec:
        """How to read array-like images (lists, arrays): from ``features`` or the example."""
        if self._codec is None:
            feature = None if self.features is None else self.features.get(self.image_column)
            if isinstance(example, Mapping) and {"bytes", "path"} & set(example):
                raise TypeError(
                    f"column {self.image_column!r} holds undecoded images (Image(decode=False)); "
                    f"cast it with ds.cast_column({self.image_column!r}, datasets.Image()) "
                    "before with_transform."
                )
            if feature is None:
                # no Features: the example's dtype and shape tell the layout (datasets gives
                # uint8 arrays back as int64 lists)
                dtype = np.asarray(example).dtype
                feature = Value("uint8" if np.issubdtype(dtype, np.integer) else "float32")
            shape = self.augment.model.event_shape
            self._codec = _ImageCodec(feature, example, shape, self.image_column)
        return self._codec

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        if self.image_column not in batch:
            raise KeyError(
                f"image_column {self.image_column!r} is not in the batch (columns: {list(batch)})."
            )
        if self.label_column is not None and self.label_column not in batch:
            raise KeyError(
                f"label_column {self.label_column!r} is not in the batch (columns: "
                f"{list(batch)}); name the label column, or pass label_column=None to let the "
                "flow assign the class."
            )
        images = batch[self.image_column]
        labels = batch.get(self.label_column) if self.label_column else None
        rng = self._rng.python
        replaced = [rng.random() < self.p for _ in images]
        out = list(images)
        for i, flag in enumerate(replaced):
            if not flag:
                continue
            old = images[i]
            label = None if labels is None else labels[i]
            params = {"apply": True, "label": self.augment._label_value(label)}
            if isinstance(old, (PIL.Image.Image, Tensor)):
                self.augment._check_image(old)
                out[i] = self.augment.transform(old, params)
            else:
                codec = self._codec_for(old)
                x = codec.decode(old)
                self.augment._check_image(x)
                out[i] = codec.like(self.augment.transform(x, params), old)
        batch = dict(batch)
        batch[self.image_column] = out
        if self.mark_column is not None:
            batch[self.mark_column] = replaced
        return batch


def synthetic_transform(
    model: ConditionalFlow,
    p: float = 0.5,
    image_column: str = "image",
    label_column: str | None = "label",
    mode: str = "resample",
    temperature: float = 0.8,
    strength: float = 0.5,
    bank: Any = True,
    seed: int | None = None,
    filter_threshold: float | None = None,
    bank_size: int = 256,
    mark_column: str | None = None,
    features: Features | None = None,
    coarse_scales: int | None = None,
) -> SyntheticTransform:
    """A function for ``ds.with_transform(...)`` that swaps a fraction ``p`` of each batch for
    synthetic samples of the same labels (see :class:`flowaug.FlowAugment` for ``mode``,
    ``strength``, ``coarse_scales``, ``bank`` and ``seed``).

    Args:
        model: a trained class-conditional image flow.
        p: share of rows replaced.
        image_column, label_column: the columns to read (``label_column=None``: the flow
            assigns the class).
        mark_column: if given, a bool column of that name says which rows were replaced.
        features: the dataset's ``Features``, to read array columns' layout (PIL images and
            tensors need none).

    Example:
        >>> ds = ds.with_transform(synthetic_transform(model, p=0.3, seed=0))  # doctest: +SKIP
    """
    return SyntheticTransform(
        model,
        p,
        image_column,
        label_column,
        mark_column,
        features,
        mode=mode,
        temperature=temperature,
        strength=strength,
        bank=bank,
        seed=seed,
        filter_threshold=filter_threshold,
        bank_size=bank_size,
        coarse_scales=coarse_scales,
    )


# --- streaming --------------------------------------------------------------------------------
class _StreamJob:
    def __init__(
        self,
        model,
        codec,
        features,
        image_column,
        label_column,
        weights,
        num_samples,
        mark,
        temperature,
        batch_size,
        filter_threshold,
    ):
        self.model, self.codec, self.features = model, codec, features
        self.image_column, self.label_column = image_column, label_column
        self.weights, self.num_samples, self.mark = weights, num_samples, mark
        self.temperature, self.batch_size = temperature, batch_size
        self.filter_threshold = filter_threshold

    def rows(self, shard_seed: int, quota: int | None) -> Iterator[dict[str, Any]]:
        generator = torch.Generator().manual_seed(shard_seed)
        empty = {k: None for k in self.features}
        made = 0
        while quota is None or made < quota:
            b = self.batch_size if quota is None else min(self.batch_size, quota - made)
            y = torch.multinomial(self.weights, b, replacement=True, generator=generator)
            counts = {int(c): int((y == c).sum()) for c in y.unique()}
            for x, yb in iter_synthetic(
                self.model,
                counts,
                self.temperature,
                generator,
                self.batch_size,
                self.filter_threshold,
            ):
                yield from _encode_rows(
                    self.codec,
                    x,
                    yb,
                    empty,
                    self.image_column,
                    self.label_column,
                    self.model.levels,
                    self.mark,
                )
            made += b


def _stream_rows(job: _StreamJob, shards: list[tuple[int, int | None]]) -> Iterator[dict]:
    for shard_seed, quota in shards:
        yield from job.rows(shard_seed, quota)


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
        temperature: latent noise scale.
        batch_size: samples per flow pass.
        num_samples: total rows (``None``: endless).
        class_weights: relative frequency of each class (``None``: uniform).
        filter_threshold: class-posterior filter (see :class:`flowaug.SyntheticBank`).
        num_shards: independent shards, so DataLoader workers each get their own.
        mark_synthetic: add an ``is_synthetic=True`` column.

    Returns:
        ``datasets.IterableDataset``; with ``interleave_datasets`` and a real stream:
        ``interleave_datasets([real, synthetic], probabilities=[0.7, 0.3], seed=0)`` (or use
        :func:`interleave_synthetic`).
    """
    model = check_conditional_model(model)
    if len(model.event_shape) != 3:
        raise ValueError(
            f"synthetic_iterable_dataset needs an image model, got {list(model.event_shape)}."
        )
    k = model.num_classes
    if features is None:
        c = model.event_shape[0]
        features = Features(
            {
                image_column: datasets.Image(mode=_PIL_MODES.get(c)),
                label_column: ClassLabel(num_classes=k),
            }
        )
    features = Features({k_: v for k_, v in features.items() if k_ != SYNTHETIC_COLUMN})
    _check_column(features, image_column, "image_column")
    _check_column(features, label_column, "label_column")
    _label_info(features, label_column, k)
    if mark_synthetic:
        features = Features({**features, SYNTHETIC_COLUMN: Value("bool")})
    weights = (
        torch.ones(k)
        if class_weights is None
        else torch.as_tensor(class_weights, dtype=torch.float64)
    )
    if weights.shape != (k,) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(
            f"class_weights must be {k} non-negative numbers (one per class), not all zero; got "
            f"{class_weights!r}."
        )
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}.")
    if num_samples is not None and num_samples < 0:
        raise ValueError(f"num_samples must be >= 0 or None (endless), got {num_samples}.")
    codec = _ImageCodec(features[image_column], None, model.event_shape, image_column)
    job = _StreamJob(
        model,
        codec,
        features,
        image_column,
        label_column,
        weights.float(),
        num_samples,
        mark_synthetic,
        check_temperature(temperature),
        int(batch_size),
        filter_threshold,
    )
    quotas: list[int | None] = (
        [None] * num_shards
        if num_samples is None
        else [num_samples // num_shards + (i < num_samples % num_shards) for i in range(num_shards)]
    )
    shards = [(derive_seed(seed, i), q) for i, q in enumerate(quotas)]
    fingerprint = _fingerprint(
        "flowaug.hf.synthetic_iterable_dataset/1",
        _model_digest(model),
        features.to_dict(),
        seed,
        temperature,
        batch_size,
        num_samples,
        weights.tolist(),
        filter_threshold,
        num_shards,
    )
    try:
        from datasets.io.generator import GeneratorDatasetInputStream

        return GeneratorDatasetInputStream(
            generator=_stream_rows,
            features=features,
            gen_kwargs={"job": job, "shards": shards},
            streaming=True,
            fingerprint=fingerprint,
        ).read()
    except (ImportError, TypeError):  # older datasets: hashes the model, slower but correct
        return datasets.IterableDataset.from_generator(
            _stream_rows, features=features, gen_kwargs={"job": job, "shards": shards}
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
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio <= 0:
        raise ValueError(
            f"ratio must be a number > 0 (synthetic rows per real row), got {ratio!r}."
        )
    if isinstance(real, datasets.Dataset):
        real = real.with_format(None).to_iterable_dataset()
    if not isinstance(real, datasets.IterableDataset) or real.features is None:
        raise TypeError(
            "real must be a datasets.Dataset or an IterableDataset with known features."
        )
    features = Features({k: v for k, v in real.features.items() if k != SYNTHETIC_COLUMN})
    if SYNTHETIC_COLUMN not in real.features:
        real = real.map(_mark_real).cast(Features({**features, SYNTHETIC_COLUMN: Value("bool")}))
    synthetic = synthetic_iterable_dataset(
        model, features, image_column, label_column, seed=seed, **stream_kwargs
    )
    p = float(ratio) / (1.0 + float(ratio))
    return datasets.interleave_datasets(
        [real, synthetic],
        probabilities=[1.0 - p, p],
        seed=seed,
        stopping_strategy="first_exhausted",
    )
