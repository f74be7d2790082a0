"""One call from data to a trained model: :func:`fit`, with model defaults for the data's shape
and size (:func:`build_model`) and the one train/validation split (:func:`train_val_split`)."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch
from torch import nn

from flowaug._checks import check_int
from flowaug.data import FlowData, as_flow_data
from flowaug.flows.glow import Glow
from flowaug.training.batches import drop_labels, unlabelled_pool
from flowaug.training.config import SMALL_SET, TrainConfig, default_config, is_large_image
from flowaug.training.trainer import FlowTrainer
from flowaug.training.transfer import transfer_model

__all__ = ["build_model", "fit", "split_index", "train_val_split"]


def build_model(data: FlowData, num_samples: int | None = None, **model_kwargs: Any) -> nn.Module:
    """A model with defaults suited to ``data``: Glow for images, TabularFlow for features.

    ``num_samples`` is the number of training examples the defaults are for (default:
    ``len(data)``; more when unlabelled examples join); ``model_kwargs`` override the defaults
    (e.g. ``depth``, ``hidden``, ``dropout``).
    """
    if data.is_image:
        small = (len(data) if num_samples is None else num_samples) < SMALL_SET
        # a small set is fitted in minutes by the 8x8 model at any size: at 28-32 pixels the
        # wider, deeper one (12 x 128) took twice the time per step and reached a worse
        # validation bits/dim before it overfitted (benchmarks/results/fit_time.md)
        wide = is_large_image(data.event_shape) and not small
        kwargs: dict[str, Any] = dict(
            depth=12 if wide else 8,
            hidden=128 if wide else 64,
            dropout=0.2 if small else 0.0,
            levels=data.levels or 256,
        )
        return Glow(data.event_shape, num_classes=data.num_classes, **{**kwargs, **model_kwargs})
    if len(data.event_shape) == 1:
        from flowaug.tabular import TabularFlow  # pandas, imported on first use

        return TabularFlow(data.event_shape[0], data.num_classes, **model_kwargs)
    raise ValueError(
        f"cannot pick a model for samples of shape {list(data.event_shape)}; pass images "
        "[N, C, H, W] or features [N, F]."
    )


def train_val_split(data: FlowData, fraction: float, seed: int = 0) -> tuple[FlowData, FlowData]:
    """Hold out ``fraction`` of ``data``, stratified by class when every class allows it."""
    train_idx, val_idx = split_index(data, fraction, seed)
    return data.subset(train_idx), data.subset(val_idx)


def split_index(data: FlowData, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The sorted row indices ``(train, held out)`` of :func:`train_val_split`."""
    from sklearn.model_selection import train_test_split

    labels = None if data.y is None else data.y.numpy()
    stratify = labels
    if labels is not None:
        counts = np.bincount(labels)
        if counts[counts > 0].min() < 2 or round(fraction * len(data)) < len(np.unique(labels)):
            stratify = None
    train_idx, val_idx = train_test_split(
        np.arange(len(data)), test_size=fraction, random_state=seed, stratify=stratify
    )
    return np.sort(train_idx), np.sort(val_idx)


def fit(data: Any, *, unlabelled: Any = None, init: Any = None, val: Any = None,
        val_fraction: float = 0.1, config: TrainConfig | None = None, seed: int = 0,
        **model_kwargs: Any) -> nn.Module:  # fmt: skip
    """One call from data to a trained model.

    Args:
        data: images or features in any form :func:`flowaug.data.as_flow_data` accepts, or a
            pandas DataFrame (handed to ``TabularFlow.from_frame(df, **model_kwargs)``, e.g.
            ``label="target", categorical=[...]``). Rows labelled ``-1`` (scikit-learn's
            convention; also ``(image, None)`` items) are unlabelled examples.
        unlabelled: more examples without labels (any form ``data`` takes; labels, if any, are
            not used). A class-conditional flow learns from them through its own class
            posterior (semi-supervised: see :mod:`flowaug.training.semi_supervised`), which
            is where the accuracy is when labels are few.
        init: a fitted model, or the folder of a saved one, to start from (transfer): an
            unconditional flow fitted on unlabelled images, or a flow fitted on other classes
            (see :func:`flowaug.training.transfer.transfer_model`); ``model_kwargs`` do not
            apply.
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
    start = _from_frame if _is_frame(data) else _from_data
    model, labelled, pool, val_data = start(data, unlabelled, val, init, seed, model_kwargs)
    train = labelled
    if val is None and val_fraction > 0 and len(labelled) > 1:
        train, val_data = train_val_split(labelled, val_fraction, seed)
    config = config or default_config(
        len(train) + (0 if pool is None else len(pool)), seed=seed, event_shape=train.event_shape
    )
    FlowTrainer(model, config).fit(train, val_data, unlabelled=pool)
    model.class_names = labelled.class_names
    return model


def _from_data(data: Any, unlabelled: Any, val: Any, init: Any, seed: int,
               model_kwargs: dict[str, Any]) -> tuple[nn.Module, FlowData, Any, Any]:  # fmt: skip
    """Tensors, arrays and datasets: ``(model, labelled rows, unlabelled pool, val)``, the model
    built with defaults for every example (validation rows included) or started from ``init``."""
    if init is not None and model_kwargs:
        raise ValueError(
            f"init= starts from a fitted model, whose architecture is fixed; drop "
            f"{sorted(model_kwargs)} or fit without init."
        )
    levels = model_kwargs.get("levels", getattr(init, "levels", None))
    flow_data = as_flow_data(data, levels=levels, allow_unlabelled=True)
    extra = None
    if unlabelled is not None:
        extra = as_flow_data(drop_labels(unlabelled), levels=flow_data.levels)
    labelled = flow_data if flow_data.y is None else flow_data.labelled()
    pool = unlabelled_pool(flow_data, extra)
    val_data = None if val is None else as_flow_data(val, levels=flow_data.levels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if init is not None:
            model = transfer_model(init, flow_data.num_classes, flow_data.class_names)
        else:
            everything = len(labelled) + (0 if pool is None else len(pool))
            model = build_model(flow_data, num_samples=everything, **model_kwargs)
    return model, labelled, pool, val_data


def _is_frame(data: Any) -> bool:
    """A pandas DataFrame (pandas is loaded already if ``data`` is one)."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(data, pd.DataFrame)


def _from_frame(frame: Any, unlabelled: Any, val: Any, init: Any, seed: int,
                model_kwargs: dict[str, Any]) -> tuple[nn.Module, FlowData, Any, Any]:  # fmt: skip
    """DataFrames: ``(model, labelled rows, unlabelled pool, val)`` encoded by the tabular
    flow's column encoders, learned on every row (``init`` does not apply).

    Rows whose label is ``unlabelled_label`` (default ``-1``; a model kwarg) and the rows of an
    ``unlabelled`` DataFrame (same feature columns, label column absent or ignored) shape the
    encoders and enter training as unlabelled examples."""
    import pandas as pd

    from flowaug.tabular import unlabelled_rows
    from flowaug.tabular.model import table_model

    model_kwargs = dict(model_kwargs)
    marker = model_kwargs.pop("unlabelled_label", -1)
    label = model_kwargs.pop("label", None)
    table = frame
    if unlabelled is not None:
        extra = unlabelled
        if label is not None:
            extra = extra.drop(columns=[label], errors="ignore").assign(**{label: marker})
        table = pd.concat([frame, extra], ignore_index=True)
    mask = np.zeros(len(table), dtype=bool)
    if label is not None:
        mask = unlabelled_rows(table[label].to_numpy(), marker, f"the label column {label!r}")
    model, x, y, pool = table_model(table, label, mask, seed, **model_kwargs)
    names = model.class_names
    val_data = None
    if val is not None:
        xv, yv = model.encode_frame(val, seed=seed)
        val_data = as_flow_data((xv.cpu(), None if yv is None else yv.cpu()), class_names=names)
    pool = as_flow_data(pool) if len(pool) else None
    return model, as_flow_data((x, y), class_names=names), pool, val_data
