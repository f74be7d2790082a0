"""``flowaug fit``: a class-conditional flow fitted to a data set and saved, with its plan
printed before training and its samples and training curve after."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowaug.cli.common import (
    DATA_HELP,
    add_training_arguments,
    check_out_dir,
    duration,
    save_samples,
)
from flowaug.cli.fit_plan import (
    CHECKPOINT_AFTER_SECONDS,
    default_checkpoint_every,
    describe_plan,
    interrupted_line,
    seconds_per_step,
)
from flowaug.cli.registry import command
from flowaug.data import FlowData, load_data, to_hf_dataset
from flowaug.evaluate import write_split
from flowaug.plots import save_training_curve
from flowaug.training import (
    FlowTrainer,
    TrainingInterrupted,
    build_model,
    default_config,
    split_index,
    train_val_split,
    transfer_model,
)
from flowaug.training.batches import unlabelled_pool

_MODEL_OPTIONS = ("depth", "hidden", "dropout")


def _fit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--out", required=True, help="output folder for the model and history")
    add_training_arguments(p, None)
    p.add_argument("--batch-size", type=int, help="global batch size (default: N/8 clipped to "
                   "[8, 64], N the training samples; [8, 16] for images over 16 pixels a side "
                   "below 5000 samples)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: 2e-3 below 5000 "
                   "samples, 5e-3 for images over 16 pixels a side, else 1e-3)")
    p.add_argument("--eval-every", type=int, help="steps between validations (default: one "
                   "epoch, at least 25 steps)")
    p.add_argument("--patience", type=int, help="validations without improvement before early "
                   "stopping (default: 5)")
    p.add_argument("--max-time", type=duration, metavar="TIME", help="time budget (300, 90s, "
                   "5m, 1.5h): stop at the first step past it, keeping the best weights so far")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held-out share")
    p.add_argument("--levels", type=int, help="intensity levels of integer images")
    p.add_argument("--image-size", type=int, metavar="N", help="resize every image to N x N "
                   "first (N even; a multiple of 8 gives Glow 3 scales): for folders of odd or "
                   "mixed sizes")
    p.add_argument("--depth", type=int, help="flow steps per scale")
    p.add_argument("--hidden", type=int, help="width of the coupling networks")
    p.add_argument("--dropout", type=float, help="dropout in the coupling networks")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints, for --resume "
                   "(default: about 10 per fit when it is estimated to take over "
                   f"{CHECKPOINT_AFTER_SECONDS:.0f} s, else none; 0: none)")
    p.add_argument("--resume", nargs="?", const="latest", metavar="CHECKPOINT", help="resume "
                   "from the newest checkpoint in OUT/checkpoints, or from the CHECKPOINT folder "
                   "given")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    p.add_argument("--unlabelled", metavar="SPEC", help="more images without labels (a folder of "
                   "images, a saved dataset whose labels are -1 or ignored): the flow learns "
                   "from them through its own class posterior")
    p.add_argument("--init", metavar="MODEL_DIR", help="start from a model fitted elsewhere "
                   "(unconditional, or on other classes) and fine-tune it; "
                   "--depth/--hidden/--dropout do not apply")


def _check_arguments(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Refuse options that cannot work, before any data is read; returns the model options."""
    # --resume continues in a non-empty --out; a model inside --data would become a class
    check_out_dir(out, args.overwrite or args.resume is not None, [("--data", args.data)])
    if not 0 <= args.val_fraction < 1:
        raise ValueError(f"--val-fraction must be in [0, 1), got {args.val_fraction}.")
    if args.resume == "latest" and not (out / "checkpoints").is_dir():
        raise ValueError(f"--resume: {out / 'checkpoints'} does not exist; checkpoints are "
                         "written with --checkpoint-every N (and by default for fits estimated "
                         f"to take over {CHECKPOINT_AFTER_SECONDS:.0f} s). Drop --resume to "
                         "start afresh.")
    model_kwargs = {k: getattr(args, k) for k in _MODEL_OPTIONS if getattr(args, k) is not None}
    if args.init is not None and model_kwargs:
        drop = ", ".join("--" + k for k in sorted(model_kwargs))
        raise ValueError(f"--init starts from a fitted model, whose architecture is fixed; drop "
                         f"{drop}.")
    return model_kwargs


def _unlabelled_pool(args: argparse.Namespace, data: Any) -> Any:
    """The unlabelled examples of a fit: ``--data``'s label -1 rows plus ``--unlabelled``, by
    the library's ``unlabelled_pool``."""
    extra = None
    if args.unlabelled is not None:
        extra = load_data(args.unlabelled, levels=data.levels, option="--unlabelled",
                          allow_unlabelled=True, image_size=args.image_size)
        if extra.event_shape != data.event_shape or extra.levels != data.levels:
            raise ValueError(f"--unlabelled holds samples of shape {list(extra.event_shape)} "
                             f"with levels {extra.levels}, --data {list(data.event_shape)} with "
                             f"levels {data.levels}; give both at one size and bit depth.")
    pool = unlabelled_pool(data, extra)
    if pool is None or not len(pool):
        return None
    if not data.is_image:
        raise ValueError("unlabelled rows of a table: use flowaug.fit(df, label=...) or "
                         "FlowOversampler with label -1 in the Python API; the CLI's "
                         "--unlabelled takes images.")
    return pool


def _table_model(train: Any, val: Any, seed: int, model_kwargs: dict[str, Any]):
    """The library's table model (``table_model``) for labelled feature vectors, its encoders
    learned on the training part, and both parts encoded by them: ``(model, train, val)``. The
    frame has the columns ``to_hf_dataset`` gives the same data (``flowaug augment --data``
    reads it so)."""
    from flowaug.tabular.model import table_model  # pandas and scipy: only for tables

    def part(x: Any, y: Any, like: Any) -> Any:
        names, k = like.class_names, like.num_classes
        return FlowData(x.cpu(), y.cpu(), class_names=names, num_classes=k)

    frame = to_hf_dataset(train).to_pandas()
    none = np.zeros(len(frame), dtype=bool)
    model, x, y, _ = table_model(frame, "label", none, seed, **model_kwargs)
    if val is not None:
        val = part(*model.encode_frame(to_hf_dataset(val).to_pandas(), seed=seed), val)
    return model, part(x, y, train), val


def _model_and_parts(args: argparse.Namespace, data: Any, pool: Any, model_kwargs: dict):
    """``(model, train, val)``: the library's split of ``data`` (``train_val_split``) and the
    model it picks (``build_model``; or ``--init``'s), seeded with ``--seed``."""
    train, val = data, None
    if args.val_fraction > 0:
        train, val = train_val_split(data, args.val_fraction, args.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        if args.init is not None:
            return transfer_model(args.init, data.num_classes, data.class_names), train, val
        if data.is_image or data.y is None:
            total = len(data) + (0 if pool is None else len(pool))
            return build_model(data, num_samples=total, **model_kwargs), train, val
        # a labelled table: a TabularFlow with column encoders, so sample/augment work
        return _table_model(train, val, args.seed, model_kwargs)


def _config(args: argparse.Namespace, out: Path, model: Any, train: Any, num_pool: int):
    """The library's training defaults for the data size with the options given, and the
    seconds one step takes (which sets the default checkpoint interval)."""
    named = dict(max_steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                 eval_every=args.eval_every, patience=args.patience, max_time=args.max_time)
    config = default_config(
        len(train) + num_pool, seed=args.seed, event_shape=train.event_shape,
        output_dir=str(out), progress=not args.no_progress,
        mixed_precision=args.mixed_precision, checkpoint_every=args.checkpoint_every or None,
        **{k: v for k, v in named.items() if v is not None},
    )
    step_seconds = seconds_per_step(model, train.x, train.y, config)
    if args.checkpoint_every is None:
        estimate = step_seconds * config.max_steps
        every = default_checkpoint_every(config.max_steps, config.eval_every, estimate)
        config = dataclasses.replace(config, checkpoint_every=every)
    return config, step_seconds


@command("fit", help="fit a class-conditional flow to a data set and save it",
         arguments=_fit_arguments)
def _fit(args: argparse.Namespace) -> int:
    out = Path(args.out)
    model_kwargs = _check_arguments(args, out)
    data = load_data(args.data, levels=args.levels, allow_unlabelled=True,
                     image_size=args.image_size)
    pool = _unlabelled_pool(args, data)
    data = data if data.y is None else data.labelled()
    if args.overwrite and args.resume is None and (out / "checkpoints").is_dir():
        shutil.rmtree(out / "checkpoints")  # an earlier run's: this one starts afresh
    model, train, val = _model_and_parts(args, data, pool, model_kwargs)
    num_pool = 0 if pool is None else len(pool)
    config, step_seconds = _config(args, out, model, train, num_pool)
    unlabelled = f", {num_pool} unlabelled" if num_pool else ""
    print(f"{args.data}: {len(train)} train / {0 if val is None else len(val)} validation samples "
          f"of shape {list(data.event_shape)}, {data.num_classes} classes{unlabelled}; "
          f"{type(model).__name__}, {config.max_steps} steps max")
    if data.y is None:
        print(f"note: {args.data} has no labels, so this model is unconditional; "
              "class-conditional sampling and `flowaug augment` need labelled data.")
    for line in describe_plan(model, config, step_seconds, has_val=val is not None):
        print(line)
    # the trainer writes the model once, complete: with its class names (a kill after its save,
    # or an interrupted fit, can no longer leave a model without them)
    model.class_names = data.class_names
    try:
        history = FlowTrainer(model, config).fit(train, val, unlabelled=pool,
                                                 resume_from=args.resume)
    except TrainingInterrupted as err:
        print(interrupted_line(err, out, resumable=config.checkpoint_every is not None))
        return err.exit_code
    _report(args, out, data, model, config, history, has_val=val is not None)
    return 0


def _report(args: argparse.Namespace, out: Path, data: Any, model: Any, config: Any,
            history: Any, has_val: bool) -> None:
    """What a finished fit prints and writes next to the model: the held-out record, the
    training curve and (images) a sample grid."""
    if config.max_time is not None and history.steps < config.max_steps:
        if not history.stopped_early:
            print(f"time budget of {config.max_time:g} s reached at step {history.steps}: "
                  "training stopped, keeping the best weights so far")
    accuracy = history.records[-1].get("val_accuracy") if history.records else None
    if accuracy is not None:
        print(f"the flow's own classifier: validation accuracy {accuracy:.3f}")
    if has_val and data.y is not None:
        held = split_index(data, args.val_fraction, args.seed)[1]
        write_split(out, args.data, data.y, held, f"fit --val-fraction {args.val_fraction}")
    save_training_curve(history, out / "training_curve.png")
    if len(model.event_shape) == 3:
        grid = save_samples(model, out / "samples.png", 8, 0.7, args.seed)
        print(f"samples (one row per class, temperature 0.7): {grid}")
    if history.best_val_bpd is not None:
        print(f"best validation bits/dim {history.best_val_bpd:.4f} at step {history.best_step}")
    print(f"model written to {out}")
