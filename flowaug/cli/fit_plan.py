"""What ``flowaug fit`` tells the user around training: the plan and an estimated time before,
one line after an interruption, and the default checkpoint interval of long fits."""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import torch

from flowaug.training import prepare_batch
from flowaug.training.interrupts import signal_name

__all__ = [
    "seconds_per_step", "default_checkpoint_every", "describe_plan", "interrupted_line",
    "CHECKPOINT_AFTER_SECONDS",
]

#: Fits estimated to take longer than this write checkpoints by default.
CHECKPOINT_AFTER_SECONDS = 120.0


def seconds_per_step(
    model: Any, x: torch.Tensor, y: torch.Tensor | None, config: Any, steps: int = 3
) -> float:
    """Wall-clock seconds of one training step (forward, backward, AdamW) of ``model`` on a
    batch of ``config.batch_size`` rows of ``x``, timed on a copy after one warm-up step.

    The model itself is not touched (no ActNorm initialization, no update)."""
    cuda = torch.cuda.is_available() and not config.cpu
    device = torch.device("cuda" if cuda else "cpu")
    probe = copy.deepcopy(model).to(device).train()
    optimizer = torch.optim.AdamW(probe.parameters(), lr=0.0)
    batch = min(config.batch_size, len(x))
    with torch.random.fork_rng(devices=[]):
        xb = prepare_batch(probe, x[:batch], torch.Generator().manual_seed(0)).to(device)
        yb = None if y is None else y[:batch].to(device)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.mixed_precision)
        timings = []
        for _ in range(steps + 1):
            started = time.perf_counter()
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = -probe.log_prob(xb, yb).float().mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize()
            timings.append(time.perf_counter() - started)
    return float(sorted(timings[1:])[len(timings[1:]) // 2])  # the median, warm-up aside


def default_checkpoint_every(
    max_steps: int, eval_every: int, estimated_seconds: float
) -> int | None:
    """Checkpoints for fits estimated to run past :data:`CHECKPOINT_AFTER_SECONDS`: about ten
    per run, on validation steps (so a checkpoint holds the best weights up to it); ``None``
    (no checkpoints) for shorter fits."""
    if estimated_seconds < CHECKPOINT_AFTER_SECONDS:
        return None
    every = max(1, math.ceil(max_steps / 10 / eval_every)) * eval_every
    return min(every, max_steps)


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under 1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def describe_plan(model: Any, config: Any, step_seconds: float, has_val: bool) -> list[str]:
    """Lines printed before a fit: the model, the training settings and the estimated time."""
    cfg = getattr(model, "config", {}) or {}
    keys = ("depth", "num_scales", "hidden", "dropout", "coupling", "levels")
    shown = ", ".join(f"{k} {cfg[k]}" for k in keys if cfg.get(k) is not None)
    params = sum(p.numel() for p in model.parameters())
    lines = [f"model: {type(model).__name__} ({shown}; {params / 1e6:.2f}M parameters)"]
    stopping = "off (no validation data)"
    if has_val and config.patience is not None:
        stopping = (f"after {config.patience} validations without improvement "
                    f"({config.patience * config.eval_every} steps)")
    elif has_val:
        stopping = "off (--patience not set)"
    lines.append(
        f"training: up to {config.max_steps} steps, batch {config.batch_size}, learning rate "
        f"{config.lr:g} (warmup {config.warmup_steps}, {config.schedule}), precision "
        f"{config.mixed_precision}, validation every {config.eval_every} steps, early stopping "
        f"{stopping}"
    )
    checkpoints = "no checkpoints"
    if config.checkpoint_every:
        checkpoints = f"checkpoints every {config.checkpoint_every} steps (--resume continues)"
    lines.append(
        f"estimated time: at most {_duration(step_seconds * config.max_steps)} "
        f"({step_seconds:.3f} s per step, timed over 3 steps; early stopping may end it sooner); "
        f"{checkpoints}; Ctrl-C stops and keeps the best weights so far"
    )
    return lines


def interrupted_line(err: Any, out: Any, resumable: bool) -> str:
    """One line for a fit stopped by a signal (``err``: a
    :class:`flowaug.training.TrainingInterrupted`)."""
    history = err.history
    best = ""
    if history.best_step is not None:
        best = f" (validation {history.best_val_bpd:.4f} bits/dim at step {history.best_step})"
    resume = "; continue it with --resume" if resumable else ""
    return (f"flowaug fit: interrupted by {signal_name(err.signum)} at step {history.steps}: the "
            f"best weights so far{best} are saved in {out} (flowaug.load({str(out)!r})){resume}")
