"""``flowaug quickstart``: a class-conditional Glow on scikit-learn digits, end to end."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowaug._checks import check_temperature
from flowaug.cli.common import add_training_arguments, check_out_dir, save_samples
from flowaug.cli.registry import command
from flowaug.data import load_sklearn
from flowaug.evaluate import mean_bits_per_dim, write_split
from flowaug.flows.glow import Glow
from flowaug.plots import save_training_curve
from flowaug.training import FlowTrainer, TrainConfig

#: Glow settings of ``flowaug quickstart`` (scikit-learn digits, 1,068 training images).
QUICKSTART_MODEL: dict[str, Any] = dict(depth=8, hidden=64, dropout=0.2, cond_dim=32,
                                        coupling="spline")
#: Training settings of ``flowaug quickstart``: the flow overfits 1,068 images within a few
#: hundred steps, so a short cosine schedule, dropout, weight decay, an EMA of the weights and
#: best-validation selection all pay off.
QUICKSTART_TRAIN: dict[str, Any] = dict(batch_size=64, lr=2e-3, weight_decay=1e-3,
                                        warmup_steps=50, eval_every=50, patience=6, ema_decay=0.99)
QUICKSTART_STEPS = 700


def quickstart_split():
    """The quickstart's digits split: ``(digits, train, val, test)``, the last three sorted
    index arrays of 1068 / 189 / 540 images (stratified 70/30, then 15% of the 70% for
    validation, ``random_state=0``)."""
    from sklearn.model_selection import train_test_split

    data = load_sklearn("digits")
    labels = data.y.numpy()
    index = np.arange(len(data))
    train_idx, test_idx = train_test_split(index, test_size=0.3, random_state=0, stratify=labels)
    fit_idx, val_idx = train_test_split(train_idx, test_size=0.15, random_state=0,
                                        stratify=labels[train_idx])
    return (data, *(np.sort(i) for i in (fit_idx, val_idx, test_idx)))


def _quickstart_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="flowaug-quickstart", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    add_training_arguments(p, QUICKSTART_STEPS)
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
    started = time.perf_counter()
    out = Path(args.out)
    check_out_dir(out, args.overwrite, [])
    check_temperature(args.temperature)  # before training, not after saving the model
    data, fit_idx, val_idx, test_idx = quickstart_split()
    train, val, test = (data.subset(i) for i in (fit_idx, val_idx, test_idx))
    print(f"scikit-learn digits: {len(train)} train / {len(val)} validation / {len(test)} test "
          "images, 8x8, 17 levels")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model = Glow((1, 8, 8), num_classes=10, levels=17, **QUICKSTART_MODEL)
    config = TrainConfig(max_steps=args.steps, seed=args.seed, output_dir=str(out),
                         progress=not args.no_progress, mixed_precision=args.mixed_precision,
                         **QUICKSTART_TRAIN)
    history = FlowTrainer(model, config).fit(train, val)
    model.save_pretrained(out, class_names=data.class_names)
    write_split(out, "sklearn:digits", data.y, test_idx, "quickstart test split")
    test_bpd = mean_bits_per_dim(model, test.x, test.y, seed=args.seed)
    grid = save_samples(model, out / "samples.png", 10, args.temperature, args.seed)
    curve = save_training_curve(history, out / "training_curve.png", title="quickstart: digits")
    elapsed = time.perf_counter() - started
    metrics = {"test_bpd": test_bpd, "best_val_bpd": history.best_val_bpd,
               "best_step": history.best_step, "steps": history.steps,
               "stopped_early": history.stopped_early, "seconds": round(elapsed, 1)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"best validation bits/dim {history.best_val_bpd:.4f} at step {history.best_step}")
    print(f"test bits/dim: {test_bpd:.4f} (discrete, 17 levels, {len(test)} images)")
    print(f"model: {out}  samples: {grid}  curve: {curve}  ({elapsed:.0f} s)")
    return 0
