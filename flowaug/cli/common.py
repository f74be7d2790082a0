"""What several subcommands share: option groups, option checks, ``--out`` safety, sample grids."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from flowaug.evaluate import class_names
from flowaug.pixels import quantize
from flowaug.plots import save_sample_grid

DATA_HELP = (
    "sklearn:<digits|iris|wine|breast_cancer>, a datasets.save_to_disk folder, or an image "
    "folder root/<class>/<image>"
)


def add_training_arguments(p: argparse.ArgumentParser, steps: int | None) -> None:
    default = " (default: 40 epochs, at least 500, at most 20000)" if steps is None else ""
    p.add_argument("--steps", type=int, default=steps, help="maximum optimizer steps" + default)
    p.add_argument("--seed", type=int, default=0, help="seed of splits, init and training")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--mixed-precision", choices=("no", "bf16", "fp16"), default="no",
        help="autocast precision; fp16 needs CUDA. On CPU bf16 pays off for larger images "
        "only: measured 1.15-1.34x faster per step for a 32x32 RGB Glow, but 0.9x on 8x8 digits "
        "with 0.005-0.009 worse test bits/dim (benchmarks/results/bf16_cpu.md)",
    )


def add_column_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image-column", metavar="NAME", help="image column; unset: found by type")
    p.add_argument("--label-column", metavar="NAME", help="label column; unset: found by type")


def add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--temperature", type=float, default=0.8, metavar="T",
                   help="scale of the latent noise")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the synthetic rows")
    p.add_argument("--filter-threshold", type=float, metavar="P", help="keep only samples the "
                   "flow assigns to their class with at least this posterior")
    p.add_argument("--batch-size", type=int, default=256, metavar="B", help="samples per pass")


#: suffix -> seconds, longest first so that "min" is not read as "m"
_UNITS = {"min": 60.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """An argparse type: ``"90"``, ``"90s"``, ``"5m"`` / ``"5min"``, ``"1.5h"`` -> seconds > 0."""
    number = text.strip().lower()
    unit = next((u for u in _UNITS if number.endswith(u)), "")
    try:
        seconds = float(number[: len(number) - len(unit)]) * _UNITS.get(unit, 1.0)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 300, 90s, 5m or 1.5h, got {text!r}"
        )
    return seconds


def check_at_least(option: str, value: int | None, minimum: int) -> None:
    """``option`` (unless unset) is at least ``minimum``."""
    if value is not None and value < minimum:
        raise ValueError(f"{option} must be >= {minimum}, got {value}.")


def _inside(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies inside it (both resolved)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def check_out_dir(out: Path, overwrite: bool, keep: Sequence[tuple[str, str]]) -> None:
    """Refuse an ``--out`` that exists and is not an empty folder (unless ``overwrite``), or
    whose replacement would delete one of the ``keep`` paths (``(what, path)`` pairs)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a directory.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"--out {str(out)!r} exists and is not empty; pass --overwrite to "
                         "replace it, or choose another folder.")
    for what, text in keep:
        if text.startswith("sklearn:"):
            continue
        if _inside(Path(text), out):
            raise ValueError(f"--out {str(out)!r} would replace {what} {text!r}; write the result "
                             "elsewhere.")
        if _inside(out, Path(text)):
            raise ValueError(f"--out {str(out)!r} lies inside {what} {text!r}, which would then "
                             "hold the output too; write the result elsewhere.")


def class_grid(model: Any, n: int, temperature: float, seed: int, classes: Sequence[int]):
    """Samples ``[len(classes), n, C, H, W]`` in ``[0, 1]``, quantized to the model's levels."""
    generator = torch.Generator(device=model.device).manual_seed(seed)
    rows = []
    with torch.no_grad():
        for c in classes:
            y = torch.full((n,), int(c), dtype=torch.long, device=model.device)
            x = model.sample(y, temperature=temperature, generator=generator).cpu()
            if model.levels is not None:
                x = quantize(x, model.levels).float() / (model.levels - 1)
            rows.append(x)
    return torch.stack(rows)


def save_samples(model: Any, path: Path, n: int, temperature: float, seed: int) -> Path:
    """A grid of ``n`` samples per class (one labelled row each) written to ``path``."""
    grid = class_grid(model, n, temperature, seed, list(range(max(model.num_classes, 1))))
    title = f"samples, temperature {temperature}"
    return save_sample_grid(grid, path, row_labels=class_names(model), title=title)
