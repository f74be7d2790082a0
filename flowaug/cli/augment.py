"""``flowaug augment``: a data set plus synthetic rows of a saved model, written atomically as a
``datasets`` folder or as an image folder."""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flowaug._checks import check_threshold
from flowaug.cli.common import (
    DATA_HELP,
    add_column_arguments,
    add_sampling_arguments,
    check_at_least,
    check_out_dir,
)
from flowaug.cli.registry import command
from flowaug.data import find_columns, load_hf_dataset
from flowaug.io import load, recover_folder, replace_folder, staging_folder


def _augment_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL_DIR", help="folder written by `flowaug fit`")
    p.add_argument("--data", required=True, metavar="SPEC", help=DATA_HELP)
    p.add_argument("--out", required=True, metavar="OUT_DIR",
                   help="output folder (replaced atomically)")
    p.add_argument(
        "--format", choices=("dataset", "imagefolder"), default="dataset",
        help="dataset: datasets.save_to_disk (with an is_synthetic column); imagefolder: 8-bit "
        "PNG files OUT_DIR/<class>/real-<row>.png and synthetic-<n>.png, as torchvision's "
        "ImageFolder and flowaug.data.load_image_folder read them (images only)",
    )
    how_many = p.add_mutually_exclusive_group()
    how_many.add_argument("--n-per-class", type=int, metavar="N", help="synthetic rows per class")
    how_many.add_argument("--ratio", type=float, metavar="R", help="synthetic rows per real row, "
                          "per class; 1 when neither option is given")
    add_sampling_arguments(p)
    add_column_arguments(p)
    p.add_argument("--cache-dir", metavar="DIR", help="datasets cache for the synthetic rows")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def _check_options(args: argparse.Namespace) -> None:
    if args.ratio is not None and not (math.isfinite(args.ratio) and args.ratio >= 0):
        raise ValueError(f"--ratio must be a number >= 0 (synthetic rows per real row), got "
                         f"{args.ratio}.")
    check_at_least("--n-per-class", args.n_per_class, 0)
    check_at_least("--batch-size", args.batch_size, 1)
    check_threshold(args.filter_threshold)


def _data(args: argparse.Namespace, model: Any) -> tuple[Any, str | None, str]:
    """``--data`` as a ``datasets.Dataset`` with its image and label columns, refused when the
    model cannot augment it."""
    if args.format == "imagefolder" and len(model.event_shape) != 3:
        raise ValueError(f"--format imagefolder writes images, but {args.model} holds a "
                         f"{type(model).__name__} of feature vectors (a table); drop --format "
                         "imagefolder to save the rows as a dataset "
                         "(datasets.load_from_disk(OUT_DIR).to_csv(...) for CSV).")
    ds = load_hf_dataset(args.data)
    image_column, label_column = find_columns(ds.features, args.image_column, args.label_column)
    if label_column is None:
        raise ValueError(f"--data {args.data!r} has no label column (a ClassLabel feature or one "
                         f"named label, labels, target or class) among {list(ds.features)}; "
                         "pass --label-column.")
    if hasattr(model, "sample_frame") and getattr(model, "encoder", True) is None:
        raise ValueError(f"{args.model} holds a {type(model).__name__} without column encoders "
                         "(as `flowaug fit` makes for feature vectors); augment tables with a "
                         "model built by TabularFlow.from_frame(df), or with "
                         "flowaug.FlowOversampler.")
    if image_column is None and not hasattr(model, "sample_frame"):
        raise ValueError(f"--data {args.data!r} has no image column (an Image feature or one "
                         "named image, img, images or pixel_values) among "
                         f"{list(ds.features)}; pass --image-column.")
    return ds, image_column, label_column


@command(
    "augment",
    help="add synthetic rows from a saved model to a data set and save it",
    arguments=_augment_arguments,
    description=(
        "Reads --data as a datasets.Dataset (sklearn:digits and image folders become an Image "
        "column and a ClassLabel column), adds synthetic rows drawn from the model with "
        "flowaug.hf.augment_dataset (same Features plus a bool is_synthetic column; real rows "
        "first; deterministic for a seed) and writes the result to --out, atomically: with "
        "save_to_disk (read it back with datasets.load_from_disk(OUT_DIR)), or with --format "
        "imagefolder as PNG files in one folder per class, real and synthetic images marked in "
        "the file names (read it back with torchvision.datasets.ImageFolder(OUT_DIR) or "
        "flowaug.data.load_image_folder(OUT_DIR))."
    ),
)
def _augment(args: argparse.Namespace) -> int:
    from flowaug.hf import augment_dataset, progress_bars

    out = Path(args.out)
    note = recover_folder(out)  # what a killed earlier run left
    if note is not None:
        print(f"flowaug augment: note: {note}", file=sys.stderr)
    check_out_dir(out, args.overwrite, [("--data", args.data), ("the model", args.model)])
    _check_options(args)
    started = time.perf_counter()
    model = load(args.model)
    ds, image_column, label_column = _data(args, model)
    augmented = augment_dataset(
        ds, model, image_column=image_column or "image", label_column=label_column,
        n_per_class=args.n_per_class, ratio=args.ratio, seed=args.seed,
        temperature=args.temperature, batch_size=args.batch_size,
        filter_threshold=args.filter_threshold, progress=not args.no_progress,
        cache_dir=args.cache_dir,
    )
    if args.format == "imagefolder":
        return _write_augmented_folder(augmented, model, out, image_column, label_column, started)

    def save(folder: Path) -> None:
        with progress_bars(not args.no_progress):
            augmented.save_to_disk(str(folder))

    _write_folder_atomically(out, save)
    n_real, n_synthetic = _print_class_table(_class_table(augmented, label_column))
    print(f"{len(augmented)} rows ({n_real} real, {n_synthetic} synthetic) -> {out} "
          f"({time.perf_counter() - started:.0f} s)")
    return 0


def _write_folder_atomically(out: Path, write: Callable[[Path], Any]) -> Any:
    """``write(folder)`` into a hidden staging folder next to ``out``, then put it in place
    with :func:`flowaug.io.replace_folder`: a kill at any moment leaves the previous
    output or the new one (see that module for the one fallback window and its recovery).
    Returns what ``write`` returns."""
    out = out.absolute()
    tmp = staging_folder(out)
    try:
        result = write(tmp)
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def _class_table(ds: Any, label_column: str) -> list[tuple[str, int, int]]:
    """``(class name, real rows, synthetic rows)`` per class of an augmented dataset."""
    from datasets import ClassLabel

    from flowaug.hf import SYNTHETIC_COLUMN

    columns = ds.select_columns([label_column, SYNTHETIC_COLUMN]).with_format("numpy")
    labels = np.asarray(columns[label_column])
    synthetic = np.asarray(columns[SYNTHETIC_COLUMN], dtype=bool)
    feature = ds.features[label_column]
    if isinstance(feature, ClassLabel):
        pairs = list(enumerate(feature.names))
    else:
        pairs = [(v, str(v)) for v in np.unique(labels).tolist()]
    return [(name, int(((labels == v) & ~synthetic).sum()), int(((labels == v) & synthetic).sum()))
            for v, name in pairs]


def _print_class_table(table: Sequence[tuple[str, int, int]]) -> tuple[int, int]:
    """Prints ``(class, real, synthetic)`` rows and their totals as a table; returns the
    totals."""
    width = max([len("class"), *(len(name) for name, _, _ in table)])
    print(f"{'class':<{width}}  {'real':>8}  {'synthetic':>9}")
    for name, real, synthetic in table:
        print(f"{name:<{width}}  {real:>8}  {synthetic:>9}")
    n_real, n_synthetic = (sum(row[i] for row in table) for i in (1, 2))
    print(f"{'total':<{width}}  {n_real:>8}  {n_synthetic:>9}")
    return n_real, n_synthetic


def _write_augmented_folder(
    augmented: Any, model: Any, out: Path, image_column: str, label_column: str, started: float
) -> int:
    """``flowaug augment --format imagefolder``: PNG files in class folders, atomically."""
    from flowaug.hf import write_image_folder

    def write(folder: Path) -> Any:
        return write_image_folder(augmented, folder, model.event_shape, image_column, label_column)

    written = _write_folder_atomically(out, write)
    table = [(row.name, row.real, row.synthetic) for row in written]
    n_real, n_synthetic = _print_class_table(table)
    missing = [name for name, real, synthetic in table if real + synthetic == 0]
    if missing:
        print(f"flowaug augment: note: classes {missing} have no images, hence no folder; "
              "ImageFolder will number the other classes without them", file=sys.stderr)
    names = [name for name, real, synthetic in table if real + synthetic]
    if names != sorted(names):
        print("flowaug augment: note: ImageFolder and load_image_folder number classes by sorted "
              f"folder name ({sorted(names)[:5]}...), not in the data's order ({names[:5]}...)",
              file=sys.stderr)
    print(f"{n_real + n_synthetic} PNG files ({n_real} real-*.png, {n_synthetic} "
          f"synthetic-*.png) in {len(names)} class folders -> {out} "
          f"({time.perf_counter() - started:.0f} s); read them with "
          f"torchvision.datasets.ImageFolder({str(out)!r})")
    return 0
