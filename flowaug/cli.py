"""The ``flowaug`` command: ``flowaug quickstart | fit | sample | augment | generate |
evaluate``.

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
import dataclasses
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowaug.cli_fit import CHECKPOINT_AFTER_SECONDS

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


class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: ...)`` where an option has a fixed default; options whose default
    depends on the data say so in their help instead of showing ``None``."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


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
            formatter_class=_DefaultsHelpFormatter,
        )
        cmd.arguments(p)
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flowaug`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (OSError, ValueError, TypeError, ImportError) as err:  # OSError: file system
        print(f"flowaug {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C outside a training loop: nothing half-written to keep
        print(f"flowaug {args.command}: interrupted", file=sys.stderr)
        return 130


# --- shared pieces ---------------------------------------------------------------------------

_DATA_HELP = (
    "sklearn:<digits|iris|wine|breast_cancer>, a datasets.save_to_disk folder, or an image "
    "folder root/<class>/<image>"
)


def _add_training_arguments(p: argparse.ArgumentParser, steps: int | None) -> None:
    p.add_argument(
        "--steps",
        type=int,
        default=steps,
        help="maximum optimizer steps"
        + (" (default: 40 epochs, at least 500, at most 20000)" if steps is None else ""),
    )
    p.add_argument("--seed", type=int, default=0, help="seed of splits, init and training")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--mixed-precision",
        choices=("no", "bf16", "fp16"),
        default="no",
        help="autocast precision; fp16 needs CUDA. On CPU bf16 pays off for larger images "
        "only: measured 1.15-1.34x faster per step for a 32x32 RGB Glow, but 0.9x on 8x8 digits "
        "with 0.005-0.009 worse test bits/dim (benchmarks/results/bf16_cpu.md)",
    )


def _class_grid(model: Any, n: int, temperature: float, seed: int, classes: Sequence[int]):
    """Samples ``[len(classes), n, C, H, W]`` in ``[0, 1]``, quantized to the model's levels."""
    import torch

    from flowaug.pixels import quantize

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
QUICKSTART_MODEL: dict[str, Any] = dict(
    depth=8, hidden=64, dropout=0.2, cond_dim=32, coupling="spline"
)
#: Training settings of ``flowaug quickstart``: the flow overfits 1,068 images within a few
#: hundred steps, so a short cosine schedule, dropout, weight decay, an EMA of the weights and
#: best-validation selection all pay off.
QUICKSTART_TRAIN: dict[str, Any] = dict(
    batch_size=64,
    lr=2e-3,
    weight_decay=1e-3,
    warmup_steps=50,
    eval_every=50,
    patience=6,
    ema_decay=0.99,
)
QUICKSTART_STEPS = 700


def quickstart_split():
    """The quickstart's digits split: ``(digits, train, val, test)``, the last three sorted
    index arrays of 1068 / 189 / 540 images (stratified 70/30, then 15% of the 70% for
    validation, ``random_state=0``)."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    from flowaug.data import load_sklearn

    data = load_sklearn("digits")
    labels = data.y.numpy()
    index = np.arange(len(data))
    train_idx, test_idx = train_test_split(index, test_size=0.3, random_state=0, stratify=labels)
    fit_idx, val_idx = train_test_split(
        train_idx, test_size=0.15, random_state=0, stratify=labels[train_idx]
    )
    return (data, *(np.sort(i) for i in (fit_idx, val_idx, test_idx)))


def _quickstart_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="flowaug-quickstart", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
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
    import torch

    from flowaug._checks import check_temperature
    from flowaug.flows.glow import Glow
    from flowaug.plots import save_training_curve
    from flowaug.training import FlowTrainer, TrainConfig

    started = time.perf_counter()
    out = Path(args.out)
    _check_out_dir(out, args.overwrite, [])
    check_temperature(args.temperature)  # before training, not after saving the model
    data, fit_idx, val_idx, test_idx = quickstart_split()
    train, val, test = (data.subset(i) for i in (fit_idx, val_idx, test_idx))
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
    from flowaug.evaluate import write_split

    write_split(out, "sklearn:digits", data.y, test_idx, "quickstart test split")
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
    p.add_argument("--data", required=True, help=_DATA_HELP)
    p.add_argument("--out", required=True, help="output folder for the model and history")
    _add_training_arguments(p, None)
    p.add_argument(
        "--batch-size",
        type=int,
        help="global batch size (default: N/8 clipped to [8, 64], N the training samples)",
    )
    p.add_argument(
        "--lr", type=float, help="peak learning rate (default: 2e-3 below 5000 samples, else 1e-3)"
    )
    p.add_argument(
        "--eval-every",
        type=int,
        help="steps between validations (default: one epoch, at least 25 steps)",
    )
    p.add_argument(
        "--patience",
        type=int,
        help="validations without improvement before early stopping (default: 5)",
    )
    p.add_argument(
        "--max-time",
        type=float,
        metavar="SECONDS",
        help="time budget: stop at the first step past it, keeping the best weights so far",
    )
    p.add_argument("--val-fraction", type=float, default=0.1, help="held-out share")
    p.add_argument("--levels", type=int, help="intensity levels of integer images")
    p.add_argument(
        "--image-size",
        type=int,
        metavar="N",
        help="resize every image to N x N first (N even; a multiple of 8 gives Glow 3 scales): "
        "for folders of odd or mixed sizes",
    )
    p.add_argument("--depth", type=int, help="flow steps per scale")
    p.add_argument("--hidden", type=int, help="width of the coupling networks")
    p.add_argument("--dropout", type=float, help="dropout in the coupling networks")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        help="steps between checkpoints, for --resume (default: about 10 per fit when it is "
        f"estimated to take over {CHECKPOINT_AFTER_SECONDS:.0f} s, else none; 0: none)",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="CHECKPOINT",
        help="resume from the newest checkpoint in OUT/checkpoints, or from the CHECKPOINT "
        "folder given",
    )
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    p.add_argument(
        "--unlabelled",
        metavar="SPEC",
        help="more images without labels (a folder of images, a saved dataset whose labels are "
        "-1 or ignored): the flow learns from them through its own class posterior",
    )
    p.add_argument(
        "--init",
        metavar="MODEL_DIR",
        help="start from a model fitted elsewhere (unconditional, or on other classes) and "
        "fine-tune it; --depth/--hidden/--dropout do not apply",
    )


@command(
    "fit",
    help="fit a class-conditional flow to a data set and save it",
    arguments=_fit_arguments,
)
def _fit(args: argparse.Namespace) -> int:
    import torch

    from flowaug.cli_fit import (
        default_checkpoint_every,
        describe_plan,
        interrupted_line,
        seconds_per_step,
    )
    from flowaug.data import load_data
    from flowaug.interrupts import TrainingInterrupted
    from flowaug.plots import save_training_curve
    from flowaug.training import FlowTrainer, build_model, default_config, train_val_split

    out = Path(args.out)
    # --resume continues in a non-empty --out; a model inside --data would become a class
    _check_out_dir(out, args.overwrite or args.resume is not None, [("--data", args.data)])
    if not 0 <= args.val_fraction < 1:
        raise ValueError(f"--val-fraction must be in [0, 1), got {args.val_fraction}.")
    if args.resume == "latest" and not (out / "checkpoints").is_dir():
        raise ValueError(
            f"--resume: {out / 'checkpoints'} does not exist; checkpoints are written with "
            "--checkpoint-every N (and by default for fits estimated to take over "
            f"{CHECKPOINT_AFTER_SECONDS:.0f} s). Drop --resume to start afresh."
        )
    data = load_data(
        args.data, levels=args.levels, allow_unlabelled=True, image_size=args.image_size
    )
    pool = _unlabelled_pool(args, data)
    data = data if data.y is None else data.labelled()
    if args.overwrite and args.resume is None and (out / "checkpoints").is_dir():
        shutil.rmtree(out / "checkpoints")  # an earlier run's: this one starts afresh
    if args.val_fraction > 0:
        train, val = train_val_split(data, args.val_fraction, args.seed)
    else:
        train, val = data, None
    model_kwargs = {
        k: getattr(args, k) for k in ("depth", "hidden", "dropout") if getattr(args, k) is not None
    }
    if args.init is not None and model_kwargs:
        raise ValueError(
            f"--init starts from a fitted model, whose architecture is fixed; drop "
            f"{', '.join('--' + k for k in sorted(model_kwargs))}."
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        if args.init is not None:
            from flowaug.transfer import transfer_model

            model = transfer_model(args.init, data.num_classes, data.class_names)
        elif data.is_image or data.y is None:
            total = len(data) + (0 if pool is None else len(pool))
            model = build_model(data, num_samples=total, **model_kwargs)
        else:  # a labelled table: a TabularFlow with column encoders, so sample/augment work
            model, train, val = _table_model(train, val, args.seed, model_kwargs)
    overrides: dict[str, Any] = dict(
        output_dir=str(out),
        progress=not args.no_progress,
        mixed_precision=args.mixed_precision,
        checkpoint_every=args.checkpoint_every or None,
    )
    named = dict(
        max_steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        eval_every=args.eval_every,
        patience=args.patience,
        max_time=args.max_time,
    )
    overrides.update({k: v for k, v in named.items() if v is not None})
    num_pool = 0 if pool is None else len(pool)
    config = default_config(len(train) + num_pool, seed=args.seed, **overrides)
    step_seconds = seconds_per_step(model, train.x, train.y, config)
    if args.checkpoint_every is None:
        every = default_checkpoint_every(
            config.max_steps, config.eval_every, step_seconds * config.max_steps
        )
        config = dataclasses.replace(config, checkpoint_every=every)
    print(
        f"{args.data}: {len(train)} train / {0 if val is None else len(val)} validation "
        f"samples of shape {list(data.event_shape)}, {data.num_classes} classes"
        + (f", {num_pool} unlabelled" if num_pool else "")
        + f"; {type(model).__name__}, {config.max_steps} steps max"
    )
    if data.y is None:
        print(
            f"note: {args.data} has no labels, so this model is unconditional; class-conditional "
            "sampling and `flowaug augment` need labelled data."
        )
    for line in describe_plan(model, config, step_seconds, has_val=val is not None):
        print(line)
    # the trainer writes the model once, complete: with its class names (a kill after its save,
    # or an interrupted fit, can no longer leave a model without them)
    model.class_names = data.class_names
    try:
        history = FlowTrainer(model, config).fit(
            train, val, unlabelled=pool, resume_from=args.resume
        )
    except TrainingInterrupted as err:
        print(interrupted_line(err, out, resumable=config.checkpoint_every is not None))
        return err.exit_code
    if config.max_time is not None and history.steps < config.max_steps:
        if not history.stopped_early:
            print(
                f"time budget of {config.max_time:g} s reached at step {history.steps}: "
                "training stopped, keeping the best weights so far"
            )
    accuracy = history.records[-1].get("val_accuracy") if history.records else None
    if accuracy is not None:
        print(f"the flow's own classifier: validation accuracy {accuracy:.3f}")
    if val is not None and data.y is not None:
        from flowaug.evaluate import write_split
        from flowaug.training import split_index

        held = split_index(data, args.val_fraction, args.seed)[1]
        write_split(out, args.data, data.y, held, f"fit --val-fraction {args.val_fraction}")
    save_training_curve(history, out / "training_curve.png")
    if len(model.event_shape) == 3:
        grid = _save_samples(model, out / "samples.png", 8, 0.7, args.seed)
        print(f"samples (one row per class, temperature 0.7): {grid}")
    if history.best_val_bpd is not None:
        print(f"best validation bits/dim {history.best_val_bpd:.4f} at step {history.best_step}")
    print(f"model written to {out}")
    return 0


def _unlabelled_pool(args: argparse.Namespace, data: Any) -> Any:
    """The unlabelled examples of a fit: ``--data``'s label -1 rows plus ``--unlabelled``."""
    import torch

    from flowaug.data import load_data

    parts = [] if data.y is None else [data.unlabelled().x]
    if args.unlabelled is not None:
        extra = load_data(args.unlabelled, levels=data.levels, option="--unlabelled",
                          allow_unlabelled=True, image_size=args.image_size)
        if extra.event_shape != data.event_shape or extra.levels != data.levels:
            raise ValueError(
                f"--unlabelled holds samples of shape {list(extra.event_shape)} with levels "
                f"{extra.levels}, --data {list(data.event_shape)} with levels {data.levels}; "
                "give both at one size and bit depth."
            )
        parts.append(extra.x.to(data.x.dtype))
    parts = [p for p in parts if len(p)]
    if not parts:
        return None
    if not data.is_image:
        raise ValueError(
            "unlabelled rows of a table: use flowaug.fit(df, label=...) or FlowOversampler with "
            "label -1 in the Python API; the CLI's --unlabelled takes images."
        )
    return torch.cat(parts)


def _table_model(train: Any, val: Any, seed: int, model_kwargs: dict[str, Any]):
    """A ``TabularFlow.from_frame`` model for labelled feature vectors, its encoders learned on
    the training part, and both parts encoded by them: ``(model, train, val)``. The frame has
    the columns ``to_hf_dataset`` gives the same data (``flowaug augment --data`` reads it so)."""
    from flowaug.data import FlowData, to_hf_dataset
    from flowaug.flows.tabular import TabularFlow

    def encoded(part: Any, frame: Any) -> Any:
        x, y = model.encode_frame(frame, seed=seed)
        names, k = part.class_names, part.num_classes
        return FlowData(x.cpu(), y.cpu(), class_names=names, num_classes=k)

    frame = to_hf_dataset(train).to_pandas()
    model = TabularFlow.from_frame(frame, label="label", **model_kwargs)
    val_data = None if val is None else encoded(val, to_hf_dataset(val).to_pandas())
    return model, encoded(train, frame), val_data


# --- sample ----------------------------------------------------------------------------------


def _sample_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="folder written by `flowaug fit` / save_pretrained")
    p.add_argument("--n", type=int, default=8, help="samples per class")
    p.add_argument(
        "--grid", help="PNG of the samples, one row per class (default MODEL/samples.png)"
    )
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
    import numpy as np

    from flowaug.io import load
    from flowaug.plots import save_sample_grid
    from flowaug.sizes import check_count_in_memory, flow_sample_bytes

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}.")
    model = load(args.model)
    if len(model.event_shape) != 3:
        return _sample_table(model, args)
    classes = list(range(max(model.num_classes, 1)))
    check_count_in_memory(
        args.n * len(classes), flow_sample_bytes(model), "--n", "draw fewer.", shown=args.n
    )
    grid = _class_grid(model, args.n, args.temperature, args.seed, classes)
    path = Path(args.grid) if args.grid else Path(args.model) / "samples.png"
    path = save_sample_grid(
        grid, path, row_labels=_class_names(model), title=f"temperature {args.temperature}"
    )
    print(f"{len(classes)} x {args.n} samples -> {path}")
    if args.save:
        x = grid.flatten(0, 1).numpy()
        if model.levels is not None:
            x = np.rint(x * (model.levels - 1)).astype(np.int64)
        y = np.repeat(np.asarray(classes), args.n)
        save = Path(args.save)
        save = save if save.suffix == ".npz" else save.with_name(save.name + ".npz")
        save.parent.mkdir(parents=True, exist_ok=True)
        np.savez(save, x=x, y=y)
        print(f"samples -> {save}")
    return 0


def _sample_table(model: Any, args: argparse.Namespace) -> int:
    """``flowaug sample`` on a table model: ``--n`` rows per class as CSV, a preview printed."""
    from flowaug.frame_sampling import check_frame_size

    if getattr(model, "encoder", None) is None:
        raise ValueError(
            f"{args.model} holds a {type(model).__name__} without column encoders; sample it in "
            "Python (model.sample), or fit it with `flowaug fit` on labelled data."
        )
    check_frame_size(model, args.n * max(model.num_classes, 1), args.n, "--n")
    frame = model.sample_frame(args.n, args.temperature, args.seed)
    path = Path(args.csv) if args.csv else Path(args.model) / "samples.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    print(frame.head(10).to_string(max_cols=8))
    print(f"{len(frame)} rows ({args.n} per class) -> {path}")
    return 0


# --- augment ---------------------------------------------------------------------------------


def _inside(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies inside it (both resolved)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _check_out_dir(out: Path, overwrite: bool, keep: Sequence[tuple[str, str]]) -> None:
    """Refuse an ``--out`` that exists and is not an empty folder (unless ``overwrite``), or
    whose replacement would delete one of the ``keep`` paths (``(what, path)`` pairs)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a directory.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(
            f"--out {str(out)!r} exists and is not empty; pass --overwrite to replace it, or "
            "choose another folder."
        )
    for what, text in keep:
        if text.startswith("sklearn:"):
            continue
        if _inside(Path(text), out):
            raise ValueError(
                f"--out {str(out)!r} would replace {what} {text!r}; write the result elsewhere."
            )
        if _inside(out, Path(text)):
            raise ValueError(
                f"--out {str(out)!r} lies inside {what} {text!r}, which would then hold the "
                "output too; write the result elsewhere."
            )


def _write_folder_atomically(out: Path, write: Callable[[Path], Any]) -> Any:
    """``write(folder)`` into a hidden staging folder next to ``out``, then put it in place
    with :func:`flowaug.replace_dir.replace_folder`: a kill at any moment leaves the previous
    output or the new one (see that module for the one fallback window and its recovery).
    Returns what ``write`` returns."""
    from flowaug.replace_dir import replace_folder, staging_folder

    out = out.absolute()
    tmp = staging_folder(out)
    try:
        result = write(tmp)
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def _save_dataset_atomically(ds: Any, out: Path, progress: bool) -> None:
    """``ds.save_to_disk`` into ``out``, atomically (:func:`_write_folder_atomically`)."""
    from flowaug.hf import progress_bars

    def save(folder: Path) -> None:
        with progress_bars(progress):
            ds.save_to_disk(str(folder))

    _write_folder_atomically(out, save)


def _class_table(ds: Any, label_column: str) -> list[tuple[str, int, int]]:
    """``(class name, real rows, synthetic rows)`` per class of an augmented dataset."""
    import numpy as np
    from datasets import ClassLabel

    from flowaug.hf import SYNTHETIC_COLUMN

    columns = ds.select_columns([label_column, SYNTHETIC_COLUMN]).with_format("numpy")
    labels = np.asarray(columns[label_column])
    synthetic = np.asarray(columns[SYNTHETIC_COLUMN], dtype=bool)
    feature = ds.features[label_column]
    if isinstance(feature, ClassLabel):
        values: list[Any] = list(range(feature.num_classes))
        names = list(feature.names)
    else:
        values = np.unique(labels).tolist()
        names = [str(v) for v in values]
    return [
        (name, int(((labels == v) & ~synthetic).sum()), int(((labels == v) & synthetic).sum()))
        for v, name in zip(values, names, strict=True)
    ]


def _add_column_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image-column", metavar="NAME", help="image column; unset: found by type")
    p.add_argument("--label-column", metavar="NAME", help="label column; unset: found by type")


def _add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--temperature", type=float, default=0.8, metavar="T", help="scale of the latent noise"
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the synthetic rows")
    p.add_argument(
        "--filter-threshold",
        type=float,
        metavar="P",
        help="keep only samples the flow assigns to their class with at least this posterior",
    )
    p.add_argument("--batch-size", type=int, default=256, metavar="B", help="samples per pass")


def _augment_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL_DIR", help="folder written by `flowaug fit`")
    p.add_argument("--data", required=True, metavar="SPEC", help=_DATA_HELP)
    p.add_argument(
        "--out", required=True, metavar="OUT_DIR", help="output folder (replaced atomically)"
    )
    p.add_argument(
        "--format",
        choices=("dataset", "imagefolder"),
        default="dataset",
        help="dataset: datasets.save_to_disk (with an is_synthetic column); imagefolder: 8-bit "
        "PNG files OUT_DIR/<class>/real-<row>.png and synthetic-<n>.png, as torchvision's "
        "ImageFolder and flowaug.data.load_image_folder read them (images only)",
    )
    how_many = p.add_mutually_exclusive_group()
    how_many.add_argument("--n-per-class", type=int, metavar="N", help="synthetic rows per class")
    how_many.add_argument(
        "--ratio",
        type=float,
        metavar="R",
        help="synthetic rows per real row, per class; 1 when neither option is given",
    )
    _add_sampling_arguments(p)
    _add_column_arguments(p)
    p.add_argument("--cache-dir", metavar="DIR", help="datasets cache for the synthetic rows")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")


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
    from flowaug._checks import check_threshold
    from flowaug.data import find_columns, load_hf_dataset
    from flowaug.hf import augment_dataset
    from flowaug.io import load
    from flowaug.replace_dir import recover_folder

    out = Path(args.out)
    note = recover_folder(out)  # what a killed earlier run left
    if note is not None:
        print(f"flowaug augment: note: {note}", file=sys.stderr)
    _check_out_dir(out, args.overwrite, [("--data", args.data), ("the model", args.model)])
    if args.ratio is not None and not (math.isfinite(args.ratio) and args.ratio >= 0):
        raise ValueError(
            f"--ratio must be a number >= 0 (synthetic rows per real row), got {args.ratio}."
        )
    if args.n_per_class is not None and args.n_per_class < 0:
        raise ValueError(f"--n-per-class must be >= 0, got {args.n_per_class}.")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}.")
    check_threshold(args.filter_threshold)
    started = time.perf_counter()
    model = load(args.model)
    if args.format == "imagefolder" and len(model.event_shape) != 3:
        raise ValueError(
            f"--format imagefolder writes images, but {args.model} holds a "
            f"{type(model).__name__} of feature vectors (a table); drop --format imagefolder "
            "to save the rows as a dataset (datasets.load_from_disk(OUT_DIR).to_csv(...) for CSV)."
        )
    ds = load_hf_dataset(args.data)
    image_column, label_column = find_columns(ds.features, args.image_column, args.label_column)
    if label_column is None:
        raise ValueError(
            f"--data {args.data!r} has no label column (a ClassLabel feature or one named label, "
            f"labels, target or class) among {list(ds.features)}; pass --label-column."
        )
    if hasattr(model, "sample_frame") and getattr(model, "encoder", True) is None:
        raise ValueError(
            f"{args.model} holds a {type(model).__name__} without column encoders (as `flowaug "
            "fit` makes for feature vectors); augment tables with a model built by "
            "TabularFlow.from_frame(df), or with flowaug.FlowOversampler."
        )
    if image_column is None and not hasattr(model, "sample_frame"):
        raise ValueError(
            f"--data {args.data!r} has no image column (an Image feature or one named image, "
            f"img, images or pixel_values) among {list(ds.features)}; pass --image-column."
        )
    augmented = augment_dataset(
        ds,
        model,
        image_column=image_column or "image",
        label_column=label_column,
        n_per_class=args.n_per_class,
        ratio=args.ratio,
        seed=args.seed,
        temperature=args.temperature,
        batch_size=args.batch_size,
        filter_threshold=args.filter_threshold,
        progress=not args.no_progress,
        cache_dir=args.cache_dir,
    )
    if args.format == "imagefolder":
        return _write_augmented_folder(augmented, model, out, image_column, label_column, started)
    _save_dataset_atomically(augmented, out, progress=not args.no_progress)
    table = _class_table(augmented, label_column)
    _print_class_table(table)
    n_real, n_synthetic = (sum(row[i] for row in table) for i in (1, 2))
    print(
        f"{len(augmented)} rows ({n_real} real, {n_synthetic} synthetic) -> {out} "
        f"({time.perf_counter() - started:.0f} s)"
    )
    return 0


def _print_class_table(table: Sequence[tuple[str, int, int]]) -> None:
    """Prints ``(class, real, synthetic)`` rows and their totals as a table."""
    width = max([len("class"), *(len(name) for name, _, _ in table)])
    print(f"{'class':<{width}}  {'real':>8}  {'synthetic':>9}")
    for name, real, synthetic in table:
        print(f"{name:<{width}}  {real:>8}  {synthetic:>9}")
    n_real, n_synthetic = (sum(row[i] for row in table) for i in (1, 2))
    print(f"{'total':<{width}}  {n_real:>8}  {n_synthetic:>9}")


def _write_augmented_folder(
    augmented: Any, model: Any, out: Path, image_column: str, label_column: str, started: float
) -> int:
    """``flowaug augment --format imagefolder``: PNG files in class folders, atomically."""
    from flowaug.imagefolder_export import write_image_folder

    def write(folder: Path) -> Any:
        return write_image_folder(
            augmented, folder, model.event_shape, image_column, label_column
        )

    written = _write_folder_atomically(out, write)
    table = [(row.name, row.real, row.synthetic) for row in written]
    _print_class_table(table)
    n_real, n_synthetic = (sum(row[i] for row in table) for i in (1, 2))
    missing = [name for name, real, synthetic in table if real + synthetic == 0]
    if missing:
        print(
            f"flowaug augment: note: classes {missing} have no images, hence no folder; "
            "ImageFolder will number the other classes without them",
            file=sys.stderr,
        )
    names = [name for name, real, synthetic in table if real + synthetic]
    if names != sorted(names):
        print(
            "flowaug augment: note: ImageFolder and load_image_folder number classes by sorted "
            f"folder name ({sorted(names)[:5]}...), not in the data's order ({names[:5]}...)",
            file=sys.stderr,
        )
    print(
        f"{n_real + n_synthetic} PNG files ({n_real} real-*.png, {n_synthetic} synthetic-*.png) "
        f"in {len(names)} class folders -> {out} ({time.perf_counter() - started:.0f} s); read "
        f"them with torchvision.datasets.ImageFolder({str(out)!r})"
    )
    return 0


# --- generate --------------------------------------------------------------------------------


def _generate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL_DIR", help="folder written by `flowaug fit`")
    p.add_argument(
        "--like",
        required=True,
        metavar="SPEC",
        help=f"data whose Features the synthetic rows copy: {_DATA_HELP}",
    )
    p.add_argument("--out", required=True, metavar="OUT_DIR", help="folder of the Parquet shards")
    p.add_argument("--n-per-class", type=int, required=True, metavar="N", help="rows per class")
    p.add_argument(
        "--rows-per-shard", type=int, default=10_000, metavar="R", help="rows per Parquet file"
    )
    _add_sampling_arguments(p)
    _add_column_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


@command(
    "generate",
    help="write a large synthetic set as Parquet shards, from one or many processes",
    arguments=_generate_arguments,
    description=(
        "Generates --n-per-class synthetic images per class with the Features of --like and "
        "writes them as Parquet shards under --out with flowaug.shards.write_synthetic_shards. "
        "Under `accelerate launch` or `torchrun` every process writes its own shards on its own "
        "device; the rows do not depend on the number of processes, and a rerun after a crash "
        "writes only the missing shards. Read the set with "
        "flowaug.shards.load_synthetic_shards(OUT_DIR)."
    ),
)
def _generate(args: argparse.Namespace) -> int:
    import torch
    from accelerate import PartialState

    from flowaug.data import find_columns, load_hf_dataset
    from flowaug.io import load
    from flowaug.shards import load_synthetic_shards, write_synthetic_shards

    if args.n_per_class < 0:
        raise ValueError(f"--n-per-class must be >= 0, got {args.n_per_class}.")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}.")
    started = time.perf_counter()
    # without cpu=True, a rank of a multi-process CPU launch runs as a lone process
    state = PartialState(cpu=not torch.cuda.is_available())
    model = load(args.model).to(state.device)
    like = load_hf_dataset(args.like, option="--like")
    image_column, label_column = find_columns(like.features, args.image_column, args.label_column)
    if image_column is None or label_column is None:
        raise ValueError(
            f"--like {args.like!r} needs an image column and a label column, found "
            f"{image_column!r} and {label_column!r} among {list(like.features)}; pass "
            "--image-column / --label-column."
        )
    written = write_synthetic_shards(
        like,
        model,
        args.out,
        n_per_class=args.n_per_class,
        image_column=image_column,
        label_column=label_column,
        seed=args.seed,
        temperature=args.temperature,
        batch_size=args.batch_size,
        filter_threshold=args.filter_threshold,
        rows_per_shard=args.rows_per_shard,
        progress=not args.no_progress,
    )
    state.wait_for_everyone()
    if state.is_main_process:
        total = load_synthetic_shards(args.out, progress=not args.no_progress).num_rows
        print(
            f"{total} synthetic rows in Parquet shards -> {args.out} ({state.num_processes} "
            f"process(es), {len(written)} shards from this one, "
            f"{time.perf_counter() - started:.0f} s); read them with "
            f"flowaug.shards.load_synthetic_shards({str(args.out)!r})"
        )
    return 0


# --- evaluate --------------------------------------------------------------------------------


def _evaluation_data(args: argparse.Namespace, model: Any) -> tuple[Any, int]:
    """The real rows of ``--data`` as a :class:`~flowaug.data.FlowData` checked against the
    model, and the number of ``is_synthetic`` rows skipped."""
    import numpy as np

    from flowaug.data import FlowData, as_flow_data, load_data, load_hf_dataset
    from flowaug.hf import SYNTHETIC_COLUMN

    skipped = 0
    encoder = getattr(model, "encoder", None)  # a TabularFlow built by from_frame
    if str(args.data).startswith("sklearn:") and encoder is None:
        data = load_data(args.data)  # as bundled (digits: 17 levels), not via 8-bit images
    else:
        ds = load_hf_dataset(args.data)
        if SYNTHETIC_COLUMN in ds.column_names:
            column = ds.select_columns([SYNTHETIC_COLUMN]).with_format("numpy")[SYNTHETIC_COLUMN]
            marks = np.asarray(column, dtype=bool)
            skipped = int(marks.sum())
            ds = ds.select(np.flatnonzero(~marks), keep_in_memory=True)  # nothing in --data
            ds = ds.remove_columns(SYNTHETIC_COLUMN)
        if encoder is not None:  # the table through the model's own column encoders
            frame = ds.to_pandas()
            model.check_frame(frame, what=f"--data {args.data!r}", exact=True)
            x, y = model.encode_frame(frame, seed=args.seed)
            y = None if y is None else y.cpu()
            data = FlowData(x.detach().cpu().float(), y, num_classes=int(model.num_classes))
        else:
            data = as_flow_data(ds, image_column=args.image_column, label_column=args.label_column)
    if data.y is None:
        raise ValueError(
            f"--data {args.data!r} has no labels; evaluation needs a label column (pass "
            "--label-column)."
        )
    if tuple(data.event_shape) != tuple(model.event_shape):
        raise ValueError(
            f"--data {args.data!r} holds samples of shape {list(data.event_shape)} but the model "
            f"expects {list(model.event_shape)}."
        )
    if data.num_classes > model.num_classes:
        raise ValueError(
            f"--data {args.data!r} has {data.num_classes} classes but the model has "
            f"{model.num_classes}."
        )
    names = getattr(model, "class_names", None)
    if names and data.class_names and list(names) != list(data.class_names):
        print(
            f"flowaug evaluate: warning: the data's class names {data.class_names[:5]} differ "
            f"from the model's {list(names)[:5]}; classes are matched by index.",
            file=sys.stderr,
        )
    return data, skipped


def _model_views(model: Any, data: Any) -> tuple[Any, Any, Any, int | None]:
    """``(raw, model_space, values01, requantized_from)`` of the data for ``model``.

    ``raw`` goes to ``nll_bits_per_dim`` (integer codes on the model's levels for image models
    with levels, so bits/dim are discrete); ``model_space`` is the centre of each code's bin
    (what the flow classifies); ``values01`` are the image values ``k / (levels - 1)`` that
    distances are measured on. Integer images of other levels, and float images, are
    requantized to the model's levels.
    """
    import torch

    from flowaug.pixels import image_to_model

    levels = model.levels
    x = data.x
    if data.is_image and levels is not None:
        requantized_from = None
        if data.is_discrete:
            if data.levels != levels:
                requantized_from = data.levels
                x = torch.round(x.double() * ((levels - 1) / (data.levels - 1)))
        else:
            requantized_from = 0  # continuous
            x = torch.round(x.double() * (levels - 1))
        codes = x.long()
        values01 = codes.float() / (levels - 1)
        return codes, image_to_model(values01, levels), values01, requantized_from
    if data.is_discrete:  # integer images, model without levels: continuous [0, 1]
        x = x.float() / (data.levels - 1)
    x = x.float()
    return x, x, x, None


def _bits_per_dim(model: Any, x: Any, y: Any, seed: int, batch_size: int) -> float:
    """Mean ``model.nll_bits_per_dim`` (discrete for integer ``x``) with fixed-seed noise."""
    import torch

    from flowaug.sampling import eval_mode

    generator = torch.Generator(device=model.device).manual_seed(seed)
    parts = []
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size].to(model.device), y[i : i + batch_size]
            parts.append(model.nll_bits_per_dim(xb, yb.to(model.device), generator).cpu())
    return float(torch.cat(parts).double().mean())


def _predict(model: Any, x: Any, batch_size: int) -> Any:
    """The flow's Bayes classifier: argmax of ``model.classify`` (uniform prior), ``[N]``."""
    import torch

    from flowaug.sampling import eval_mode

    preds = []
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            preds.append(model.classify(x[i : i + batch_size].to(model.device)).argmax(1).cpu())
    return torch.cat(preds)


class _Progress:
    """Numbered progress lines on stderr, with the seconds since the start."""

    def __init__(self, enabled: bool):
        self.enabled, self.count, self.started = enabled, 0, time.perf_counter()

    def __call__(self, what: str) -> None:
        self.count += 1
        if self.enabled:
            seconds = time.perf_counter() - self.started
            print(f"[{self.count}/4 {seconds:4.0f} s] {what}", file=sys.stderr, flush=True)


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL_DIR", help="folder written by `flowaug fit`")
    p.add_argument(
        "--data",
        required=True,
        metavar="SPEC",
        help=_DATA_HELP + "; rows with is_synthetic=True are skipped",
    )
    p.add_argument(
        "--n-per-class",
        type=int,
        default=100,
        metavar="N",
        help="synthetic samples per class for the memorization and fidelity checks",
    )
    p.add_argument(
        "--temperature", type=float, default=0.8, metavar="T", help="temperature of the samples"
    )
    p.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seed of the noise and of the samples"
    )
    p.add_argument("--batch-size", type=int, default=256, metavar="B", help="samples per pass")
    p.add_argument(
        "--real-per-class",
        type=int,
        metavar="K",
        help="train the helps/hurts check's classifier on K real rows per class only (what a "
        "user with K labels per class has); default: every training row",
    )
    _add_column_arguments(p)
    p.add_argument("--json", metavar="PATH", help="also write the report to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="hide the progress lines")


def _per_class(index: Any, y: Any, k: int, seed: int) -> Any:
    """``k`` entries of ``index`` per class of ``y[index]`` (all of a class with fewer), seeded."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    parts = []
    for c in torch.unique(y[index]):
        rows = index[y[index] == c]
        parts.append(rows[torch.randperm(len(rows), generator=gen)[:k]])
    return torch.sort(torch.cat(parts)).values


@command(
    "evaluate",
    help="score a saved model on a data set: bits/dim, accuracy, memorization",
    arguments=_evaluate_arguments,
    description=(
        "Reports, for the real rows of --data: the test bits/dim under the model (discrete for "
        "integer images, one fixed-seed dequantization draw), the accuracy of the flow as a "
        "Bayes classifier (argmax of p(x | c), uniform prior), and, for --n-per-class synthetic "
        "samples per class, the memorization check (distance of each sample to its closest "
        "data row, against the data's own nearest-neighbour distances: share of near-copies), "
        "fidelity (k-NN precision / recall, MMD), and whether the samples help: a logistic "
        "regression trained on real rows, on synthetic rows only (classification accuracy "
        "score) and on real + synthetic rows, each scored on held-out real rows, with a one-line "
        "verdict. On the data the model was fitted on, the rows the fit held out (MODEL/"
        "split.json) are the test rows; on other data a warning says the rows may have been "
        "trained on. Distances are measured on image values in [0, 1] (model space for tables)."
    ),
)
def _evaluate(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from flowaug.evaluate import (
        PRECISION_MEANS,
        RECALL_MEANS,
        SPLIT_FILE,
        classifier_checks,
        held_out_rows,
    )
    from flowaug.io import atomic_write_bytes, load
    from flowaug.metrics import fidelity_report, label_agreement, memorization_report
    from flowaug.pixels import image_to_model, model_to_image
    from flowaug.sampling import sample_per_class
    from flowaug.training import split_index

    if args.n_per_class < 1:
        raise ValueError(f"--n-per-class must be >= 1, got {args.n_per_class}.")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}.")
    if args.real_per_class is not None and args.real_per_class < 1:
        raise ValueError(f"--real-per-class must be >= 1, got {args.real_per_class}.")
    started = time.perf_counter()
    model = load(args.model)
    data, skipped = _evaluation_data(args, model)
    raw, x_model, values01, requantized_from = _model_views(model, data)
    discrete = not raw.is_floating_point()
    held = held_out_rows(args.model, data.y.numpy())
    if held is not None:
        test_idx = torch.as_tensor(held)
        train_idx = torch.as_tensor(np.setdiff1d(np.arange(len(data)), held))
        scope = f"the {len(held)} rows the fit held out (MODEL/{SPLIT_FILE})"
    else:
        print(
            f"flowaug evaluate: WARNING: {args.model} holds no record that the rows of "
            f"--data {args.data!r} were held out from its training: if the model trained on "
            "them, bits/dim and accuracies below are optimistic. Evaluate on the data the fit "
            "was given (its held-out rows are then used) or on rows it never saw.",
            file=sys.stderr,
        )
        train_np, test_np = split_index(data, 0.5, args.seed)
        train_idx, test_idx = torch.as_tensor(train_np), torch.as_tensor(test_np)
        scope = f"all {len(data)} rows"
    test_y = data.y[test_idx] if held is not None else data.y
    progress = _Progress(not args.no_progress)
    progress(f"bits/dim and the flow's classifier on {scope}")
    rows_for = (lambda t: t[test_idx]) if held is not None else (lambda t: t)
    bpd = _bits_per_dim(model, rows_for(raw), test_y, args.seed, args.batch_size)
    pred = _predict(model, rows_for(x_model), args.batch_size)
    hits = pred == test_y
    names = _class_names(model)
    per_class = {
        names[c]: float(hits[test_y == c].double().mean())
        for c in range(model.num_classes)
        if bool((test_y == c).any())
    }

    progress(f"{model.num_classes} x {args.n_per_class} synthetic samples")
    x_syn, y_syn = sample_per_class(
        model, args.n_per_class, args.temperature, args.seed, args.batch_size
    )
    if discrete:
        syn01 = model_to_image(x_syn, model.levels)
        syn_model = image_to_model(syn01, model.levels)
    else:
        syn01 = syn_model = x_syn
    agreement = label_agreement(model, syn_model, y_syn, args.batch_size)
    progress("memorization and fidelity")
    memorization = memorization_report(syn01, values01, seed=args.seed)
    fidelity = fidelity_report(values01, syn01) if len(syn01) >= 2 and len(values01) >= 2 else None
    progress("a classifier on real, synthetic and real + synthetic rows, scored on held-out rows")
    real_idx = train_idx
    if args.real_per_class is not None:
        real_idx = _per_class(train_idx, data.y, args.real_per_class, args.seed)
    checks = classifier_checks(
        values01[real_idx], data.y[real_idx], values01[test_idx], data.y[test_idx],
        syn01, y_syn, seed=args.seed,
    )
    checks["real_per_class"] = args.real_per_class

    report: dict[str, Any] = {
        "model": str(args.model),
        "data": str(args.data),
        "n_rows": len(data),
        "skipped_synthetic_rows": skipped,
        "num_classes": int(model.num_classes),
        "class_names": names,
        "bits_per_dim": bpd,
        "bits_per_dim_kind": "discrete" if discrete else "continuous",
        "levels": model.levels if discrete else None,
        "requantized_from_levels": requantized_from,
        "classifier_accuracy": float(hits.double().mean()),
        "per_class_accuracy": per_class,
        "synthetic": {
            "n_per_class": args.n_per_class,
            "temperature": args.temperature,
            "seed": args.seed,
            "label_agreement": agreement,
        },
        "memorization": memorization,
        "fidelity": fidelity,
        "evaluated_on": "held-out rows" if held is not None else "all rows (no held-out record)",
        "n_evaluated_rows": len(test_y),
        "classifier_checks": checks,
        "seconds": round(time.perf_counter() - started, 2),
    }

    kind = f"discrete, {model.levels} levels" if discrete else "continuous"
    rows = [
        (f"bits/dim ({kind})", f"{bpd:.4f}"),
        ("the flow's own classifier (Bayes rule)", f"{report['classifier_accuracy']:.4f}"),
        ("synthetic samples", f"{model.num_classes} x {args.n_per_class}, T={args.temperature}"),
        (
            f"classifier on real rows ({checks['n_real_train']})",
            f"{checks['real_accuracy']:.4f}",
        ),
        (
            "  on synthetic rows only (CAS)",
            f"{checks['synthetic_only_accuracy']:.4f}",
        ),
        (
            "  on real + synthetic rows",
            f"{checks['real_plus_synthetic_accuracy']:.4f}",
        ),
        (
            f"near-copies (DCR < {memorization['threshold']:g} x median NN)",
            f"{100 * memorization['share_near_copies']:.1f}%",
        ),
        ("exact copies", f"{100 * memorization['share_exact_copies']:.1f}%"),
        (
            "DCR median / data NN median",
            f"{memorization['dcr']['median']:.4f} / {memorization['train_nn']['median']:.4f}",
        ),
    ]
    if fidelity is not None:
        rows.append(
            (
                f"precision / recall (k={fidelity['k']})",
                f"{fidelity['precision']:.3f} / {fidelity['recall']:.3f}",
            )
        )
        rows.append(("MMD^2 (RBF)", f"{fidelity['mmd_rbf']:.5f}"))
    extra = f", {skipped} synthetic rows skipped" if skipped else ""
    note = ""
    if requantized_from is not None:
        source = "float" if requantized_from == 0 else f"{requantized_from}-level"
        note = f"; {source} images requantized to {model.levels} levels"
    print(f"{args.data}: {len(data)} rows, {model.num_classes} classes{extra}{note}")
    print(f"scored on {scope}; classifiers: logistic regression, tested on "
          f"{checks['n_test']} held-out real rows")
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    if fidelity is not None:
        print(f"  {PRECISION_MEANS}.\n  {RECALL_MEANS}.")
    print(checks["verdict"])
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, (json.dumps(report, indent=2) + "\n").encode())
        print(f"report -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
