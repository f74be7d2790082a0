"""The ``flowaug`` command: ``flowaug quickstart | fit | sample ...``.

Subcommands live in a registry: a module adds one with :func:`command`::

    def _augment_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("model")

    @command("augment", help="...", arguments=_augment_arguments)
    def _augment(args: argparse.Namespace) -> int:
        ...

and :func:`main` builds one ``argparse`` sub-parser (with ``--help``) per registered command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Command", "COMMANDS", "command", "build_parser", "main", "QUICKSTART_MODEL"]


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, one-line help, argument declarations and what it runs."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    description: str | None = None


COMMANDS: dict[str, Command] = {}


def command(
    name: str,
    *,
    help: str,
    arguments: Callable[[argparse.ArgumentParser], None],
    description: str | None = None,
) -> Callable[[Callable[[argparse.Namespace], int | None]], Callable]:
    """Register the decorated function as ``flowaug <name>``; it returns an exit code."""

    def register(run: Callable[[argparse.Namespace], int | None]) -> Callable:
        if name in COMMANDS:
            raise ValueError(f"flowaug subcommand {name!r} is already registered.")
        COMMANDS[name] = Command(name, help, arguments, run, description)
        return run

    return register


def build_parser() -> argparse.ArgumentParser:
    """The ``flowaug`` parser with one sub-parser per registered command."""
    from flowaug import __version__

    parser = argparse.ArgumentParser(
        prog="flowaug",
        description="Expand scarce datasets with class-conditional normalizing flows.",
    )
    parser.add_argument("--version", action="version", version=f"flowaug {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS.values():
        p = sub.add_parser(
            cmd.name,
            help=cmd.help,
            description=cmd.description or cmd.help,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        cmd.arguments(p)
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flowaug`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (FileNotFoundError, ValueError, TypeError, ImportError) as err:
        print(f"flowaug {args.command}: error: {err}", file=sys.stderr)
        return 1


# --- shared pieces ---------------------------------------------------------------------------


def _add_training_arguments(p: argparse.ArgumentParser, steps: int | None) -> None:
    p.add_argument("--steps", type=int, default=steps, help="maximum optimizer steps")
    p.add_argument("--seed", type=int, default=0, help="seed of splits, init and training")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--mixed-precision",
        choices=("no", "bf16", "fp16"),
        default="no",
        help="autocast precision (bf16 runs on CPU, fp16 needs CUDA)",
    )


def _class_grid(model: Any, n: int, temperature: float, seed: int, classes: Sequence[int]):
    """Samples ``[len(classes), n, C, H, W]`` in ``[0, 1]``, quantized to the model's levels."""
    import torch

    from flowaug.preprocessing import quantize

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


def _class_names(model: Any) -> list[str]:
    names = getattr(model, "class_names", None)
    return list(names) if names else [str(c) for c in range(max(model.num_classes, 1))]


def _mean_bpd(model: Any, x: Any, y: Any, draws: int = 4, seed: int = 0, batch: int = 512) -> float:
    """Test bits/dim averaged over ``draws`` dequantization noise draws (discrete for integers)."""
    import torch

    from flowaug.training import prepare_batch

    total = 0.0
    with torch.no_grad():
        for k in range(draws):
            generator = torch.Generator().manual_seed(seed + k)
            parts = []
            for i in range(0, len(x), batch):
                xb = x[i : i + batch]
                x01 = prepare_batch(model, xb, generator).to(model.device)
                levels = None if xb.is_floating_point() else model.levels
                yb = None if y is None else y[i : i + batch].to(model.device)
                parts.append(model.bits_per_dim_from_log_prob(model.log_prob(x01, yb), levels))
            total += float(torch.cat(parts).mean())
    return total / draws


def _save_samples(model: Any, path: Path, n: int, temperature: float, seed: int) -> Path:
    from flowaug.plots import save_sample_grid

    classes = list(range(max(model.num_classes, 1)))
    grid = _class_grid(model, n, temperature, seed, classes)
    return save_sample_grid(
        grid,
        path,
        row_labels=_class_names(model),
        title=f"samples, temperature {temperature}",
    )


# --- quickstart ------------------------------------------------------------------------------

#: Glow settings of ``flowaug quickstart`` (scikit-learn digits, 1,068 training images).
QUICKSTART_MODEL: dict[str, Any] = dict(depth=8, hidden=64, dropout=0.1, cond_dim=32)
#: Training settings of ``flowaug quickstart``.
QUICKSTART_TRAIN: dict[str, Any] = dict(
    batch_size=64,
    lr=1e-3,
    weight_decay=1e-3,
    warmup_steps=50,
    eval_every=50,
    patience=6,
)
QUICKSTART_STEPS = 1200


def _quickstart_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="flowaug-quickstart", help="output folder")
    _add_training_arguments(p, QUICKSTART_STEPS)
    p.add_argument("--temperature", type=float, default=0.7, help="temperature of the samples")


@command(
    "quickstart",
    help="fit a class-conditional Glow on scikit-learn digits and show what it learned",
    arguments=_quickstart_arguments,
    description=(
        "Fits a class-conditional Glow to scikit-learn's bundled 8x8 digits (stratified 70/30 "
        "train/test split, random_state=0; 15% of the training part held out for validation), "
        "then writes the model, a labelled sample grid (one row per class) and the training "
        "curve to --out and prints the test bits/dim (discrete, 17 levels)."
    ),
)
def _quickstart(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from sklearn.model_selection import train_test_split

    from flowaug.data import load_sklearn
    from flowaug.flows.glow import Glow
    from flowaug.plots import save_training_curve
    from flowaug.training import FlowTrainer, TrainConfig

    started = time.perf_counter()
    out = Path(args.out)
    data = load_sklearn("digits")
    labels = data.y.numpy()
    index = np.arange(len(data))
    train_idx, test_idx = train_test_split(index, test_size=0.3, random_state=0, stratify=labels)
    fit_idx, val_idx = train_test_split(
        train_idx, test_size=0.15, random_state=0, stratify=labels[train_idx]
    )
    train, val, test = (data.subset(np.sort(i)) for i in (fit_idx, val_idx, test_idx))
    print(
        f"scikit-learn digits: {len(train)} train / {len(val)} validation / {len(test)} test "
        "images, 8x8, 17 levels"
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model = Glow((1, 8, 8), num_classes=10, levels=17, **QUICKSTART_MODEL)
    config = TrainConfig(
        max_steps=args.steps,
        seed=args.seed,
        output_dir=str(out),
        progress=not args.no_progress,
        mixed_precision=args.mixed_precision,
        **QUICKSTART_TRAIN,
    )
    history = FlowTrainer(model, config).fit(train, val)
    model.save_pretrained(out, class_names=data.class_names)
    test_bpd = _mean_bpd(model, test.x, test.y, seed=args.seed)
    grid = _save_samples(model, out / "samples.png", 10, args.temperature, args.seed)
    curve = save_training_curve(history, out / "training_curve.png", title="quickstart: digits")
    elapsed = time.perf_counter() - started
    metrics = {
        "test_bpd": test_bpd,
        "best_val_bpd": history.best_val_bpd,
        "best_step": history.best_step,
        "steps": history.steps,
        "stopped_early": history.stopped_early,
        "seconds": round(elapsed, 1),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"best validation bits/dim {history.best_val_bpd:.4f} at step {history.best_step}")
    print(f"test bits/dim: {test_bpd:.4f} (discrete, 17 levels, {len(test)} images)")
    print(f"model: {out}  samples: {grid}  curve: {curve}  ({elapsed:.0f} s)")
    return 0


# --- fit -------------------------------------------------------------------------------------


def _fit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        required=True,
        help="sklearn:<digits|iris|wine|breast_cancer>, a datasets.save_to_disk folder, or an "
        "image folder root/<class>/<image>",
    )
    p.add_argument("--out", required=True, help="output folder for the model and history")
    _add_training_arguments(p, None)
    p.add_argument("--batch-size", type=int, help="global batch size")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--eval-every", type=int, help="steps between validations")
    p.add_argument("--patience", type=int, help="validations without improvement before stopping")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held-out share")
    p.add_argument("--levels", type=int, help="intensity levels of integer images")
    p.add_argument("--depth", type=int, help="flow steps per scale")
    p.add_argument("--hidden", type=int, help="width of the coupling networks")
    p.add_argument("--dropout", type=float, help="dropout in the coupling networks")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    p.add_argument("--resume", action="store_true", help="resume from OUT/checkpoints")


@command(
    "fit",
    help="fit a class-conditional flow to a data set and save it",
    arguments=_fit_arguments,
)
def _fit(args: argparse.Namespace) -> int:
    import torch

    from flowaug.data import load_data
    from flowaug.plots import save_training_curve
    from flowaug.training import FlowTrainer, build_model, default_config, train_val_split

    out = Path(args.out)
    data = load_data(args.data, levels=args.levels)
    if args.val_fraction > 0:
        train, val = train_val_split(data, args.val_fraction, args.seed)
    else:
        train, val = data, None
    model_kwargs = {
        k: getattr(args, k) for k in ("depth", "hidden", "dropout") if getattr(args, k) is not None
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model = build_model(data, **model_kwargs)
    overrides: dict[str, Any] = dict(
        output_dir=str(out),
        progress=not args.no_progress,
        mixed_precision=args.mixed_precision,
        checkpoint_every=args.checkpoint_every,
    )
    named = dict(
        max_steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        eval_every=args.eval_every,
        patience=args.patience,
    )
    overrides.update({k: v for k, v in named.items() if v is not None})
    config = default_config(len(train), seed=args.seed, **overrides)
    print(
        f"{args.data}: {len(train)} train / {0 if val is None else len(val)} validation "
        f"samples of shape {list(data.event_shape)}, {data.num_classes} classes; "
        f"{type(model).__name__}, {config.max_steps} steps max"
    )
    history = FlowTrainer(model, config).fit(
        train, val, resume_from="latest" if args.resume else None
    )
    model.save_pretrained(out, class_names=data.class_names)
    save_training_curve(history, out / "training_curve.png")
    if history.best_val_bpd is not None:
        print(f"best validation bits/dim {history.best_val_bpd:.4f} at step {history.best_step}")
    print(f"model written to {out}")
    return 0


# --- sample ----------------------------------------------------------------------------------


def _sample_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="folder written by `flowaug fit` / save_pretrained")
    p.add_argument("--n", type=int, default=8, help="samples per class")
    p.add_argument(
        "--grid", help="PNG of the samples, one row per class (default MODEL/samples.png)"
    )
    p.add_argument("--save", help="also write the samples to this .npz file (x, y)")
    p.add_argument("--temperature", type=float, default=0.7, help="scale of the latent noise")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws")


@command(
    "sample",
    help="draw class-conditional samples from a saved model",
    arguments=_sample_arguments,
)
def _sample(args: argparse.Namespace) -> int:
    import numpy as np

    from flowaug.io import load
    from flowaug.plots import save_sample_grid

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}.")
    model = load(args.model)
    if len(model.event_shape) != 3:
        raise ValueError(
            f"{args.model} holds a {type(model).__name__} for feature vectors; sample grids "
            "need an image model."
        )
    classes = list(range(max(model.num_classes, 1)))
    grid = _class_grid(model, args.n, args.temperature, args.seed, classes)
    path = Path(args.grid) if args.grid else Path(args.model) / "samples.png"
    save_sample_grid(
        grid, path, row_labels=_class_names(model), title=f"temperature {args.temperature}"
    )
    print(f"{len(classes)} x {args.n} samples -> {path}")
    if args.save:
        x = grid.flatten(0, 1).numpy()
        if model.levels is not None:
            x = np.rint(x * (model.levels - 1)).astype(np.int64)
        y = np.repeat(np.asarray(classes), args.n)
        np.savez(args.save, x=x, y=y)
        print(f"samples -> {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
