"""PNG figures: labelled sample grids and training curves.

Figures are drawn with matplotlib's object API on an Agg canvas, so nothing here touches the
global backend or needs a display.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

__all__ = ["save_sample_grid", "save_training_curve"]


def _save(fig: Any, path: str | Path) -> Path:
    """Lay out ``fig``, write it to ``path`` (parents created; ``.png`` added when the name
    has no suffix, as matplotlib does) and return the path written."""
    fig.tight_layout()
    path = Path(path)
    if not path.suffix:
        path = path.with_name(path.name + ".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_sample_grid(
    images: Tensor | np.ndarray, path: str | os.PathLike,
    row_labels: Sequence[str] | None = None, title: str | None = None,
) -> Path:
    """Save a grid of ``images`` ``[R, N, C, H, W]`` (R rows of N images, ``C`` 1 or 3, values
    in ``[0, 1]``), one row per class, to the PNG file ``path`` (folders are created) with one
    of ``row_labels`` (e.g. class names) left of each row; returns the path written."""
    arr = images.detach().cpu().float().numpy() if isinstance(images, Tensor) else images
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim != 5 or arr.shape[2] not in (1, 3):
        raise ValueError(f"images must have shape [rows, cols, C, H, W] with C in (1, 3), got "
                         f"{list(arr.shape)}.")
    rows, cols = arr.shape[:2]
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"row_labels has {len(row_labels)} entries for {rows} rows.")
    arr = np.clip(arr, 0.0, 1.0)
    fig = _figure(0.6 * cols + 1.0, 0.6 * rows + (0.5 if title else 0.1))
    axes = fig.subplots(rows, cols, squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r][c]
            img = arr[r, c]
            if img.shape[0] == 1:
                ax.imshow(img[0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            else:
                ax.imshow(img.transpose(1, 2, 0), interpolation="nearest")
            ax.set(xticks=[], yticks=[])
            for spine in ax.spines.values():
                spine.set_visible(False)
        if row_labels is not None:
            axes[r][0].set_ylabel(str(row_labels[r]), rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def save_training_curve(history: Any, path: str | os.PathLike, title: str | None = None) -> Path:
    """Plot train and validation bits/dim of ``history`` (a :class:`flowaug.training.History`
    or its ``to_dict()`` form) against steps, marking the best validation step, to the PNG file
    ``path``."""
    data: Mapping[str, Any] = history if isinstance(history, Mapping) else history.to_dict()
    records = data.get("records") or []
    if not records:
        raise ValueError("history has no records to plot; train for at least eval_every steps.")
    fig = _figure(6.0, 4.0)
    ax = fig.subplots()
    for key, label in (("train_bpd", "train"), ("val_bpd", "validation")):
        points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker=".", label=label)
    best = data.get("best_step")
    if best is not None and data.get("best_val_bpd") is not None:
        ax.axvline(best, color="gray", linestyle="--", linewidth=1)
        label = f"best: {data['best_val_bpd']:.3f} @ {best}"
        ax.scatter([best], [data["best_val_bpd"]], color="black", zorder=3, label=label)
    ax.set(xlabel="step", ylabel="bits/dim")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return _save(fig, path)
