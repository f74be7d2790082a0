"""``flowaug sample``: class-conditional samples of a saved model, as a PNG grid (and ``.npz``)
for images or as CSV for tables."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from flowaug.cli.common import check_at_least, class_grid
from flowaug.cli.registry import command
from flowaug.evaluate import class_names
from flowaug.io import load
from flowaug.plots import save_sample_grid
from flowaug.sizes import check_count_in_memory, flow_sample_bytes


def _sample_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="folder written by `flowaug fit` / save_pretrained")
    p.add_argument("--n", type=int, default=8, help="samples per class")
    p.add_argument("--grid", help="PNG of the samples, one row per class "
                   "(default MODEL/samples.png)")
    p.add_argument("--save", help="also write the samples to this .npz file (x, y)")
    p.add_argument("--csv", help="tables: the sampled rows as CSV (default MODEL/samples.csv)")
    p.add_argument("--temperature", type=float, default=0.7, help="scale of the latent noise")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws")


@command(
    "sample",
    help="draw class-conditional samples from a saved model (a PNG grid, or CSV for tables)",
    arguments=_sample_arguments,
)
def _sample(args: argparse.Namespace) -> int:
    check_at_least("--n", args.n, 1)
    model = load(args.model)
    if len(model.event_shape) != 3:
        return _sample_table(model, args)
    classes = list(range(max(model.num_classes, 1)))
    check_count_in_memory(args.n * len(classes), flow_sample_bytes(model), "--n", "draw fewer.",
                          shown=args.n)
    grid = class_grid(model, args.n, args.temperature, args.seed, classes)
    path = Path(args.grid) if args.grid else Path(args.model) / "samples.png"
    title = f"temperature {args.temperature}"
    path = save_sample_grid(grid, path, row_labels=class_names(model), title=title)
    print(f"{len(classes)} x {args.n} samples -> {path}")
    if args.save:
        x = grid.flatten(0, 1).numpy()
        if model.levels is not None:
            x = np.rint(x * (model.levels - 1)).astype(np.int64)
        save = Path(args.save)
        save = save if save.suffix == ".npz" else save.with_name(save.name + ".npz")
        save.parent.mkdir(parents=True, exist_ok=True)
        np.savez(save, x=x, y=np.repeat(np.asarray(classes), args.n))
        print(f"samples -> {save}")
    return 0


def _sample_table(model: Any, args: argparse.Namespace) -> int:
    """``flowaug sample`` on a table model: ``--n`` rows per class as CSV, a preview printed."""
    if getattr(model, "encoder", None) is None:
        raise ValueError(f"{args.model} holds a {type(model).__name__} without column encoders; "
                         "sample it in Python (model.sample), or fit it with `flowaug fit` on "
                         "labelled data.")
    from flowaug.tabular.frames import check_frame_size  # pandas: only for tables

    check_frame_size(model, args.n * max(model.num_classes, 1), args.n, "--n")
    frame = model.sample_frame(args.n, args.temperature, args.seed)
    path = Path(args.csv) if args.csv else Path(args.model) / "samples.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    print(frame.head(10).to_string(max_cols=8))
    print(f"{len(frame)} rows ({args.n} per class) -> {path}")
    return 0
