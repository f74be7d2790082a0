"""Maximum-likelihood training of flowaug models on Hugging Face Accelerate.

:class:`FlowTrainer` runs the same loop on CPU, one GPU or many processes (``torchrun``,
``accelerate launch``): AdamW with warmup and cosine decay, gradient clipping, optional EMA of the
weights, validation bits/dim with best-weights restore and early stopping, skipping of
non-finite steps, and checkpoints from which a run resumes to exactly the weights of an
uninterrupted run (every batch is a function of the seed and the step: :mod:`.batches`).

Example:
    >>> from flowaug import Glow
    >>> from flowaug.data import load_sklearn
    >>> data = load_sklearn("digits").subset(range(64))
    >>> model = Glow((1, 8, 8), num_classes=10, depth=1, hidden=8, levels=17)
    >>> history = FlowTrainer(model, TrainConfig(batch_size=32, max_steps=4, eval_every=2,
    ...                                         progress=False)).fit(data)
    >>> [r["step"] for r in history.records]
    [2, 4]
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.torch_version import TorchVersion

from flowaug.data import FlowData
from flowaug.flows.checks import evaluating
from flowaug.io import clear_stale_temporaries, save_model
from flowaug.seeding import stream_seed
from flowaug.training.batches import Batch, TrainBatches, check_data, init_batch, validation_set
from flowaug.training.checkpoint import (
    History,
    RunState,
    clear_stale_checkpoints,
    find_checkpoint,
    load_state,
    save_state,
)
from flowaug.training.config import TrainConfig
from flowaug.training.interrupts import TrainingInterrupted, raise_on_sigterm, signum_of

__all__ = ["FlowTrainer", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """Training met too many consecutive steps with a NaN/inf loss or gradient."""


class _NLLObjective(nn.Module):
    """The training objective as a module, so DDP wraps a ``forward``: bits/dim ``[B]``."""

    def __init__(self, flow: nn.Module, levels: int | None):
        super().__init__()
        self.flow, self.levels = flow, levels

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        log_prob = self.flow.log_prob(x, y).float()
        return self.flow.bits_per_dim_from_log_prob(log_prob, self.levels)


def _has_fused_adamw(device: torch.device) -> bool:
    """Whether this torch has a fused AdamW kernel for ``device``: CUDA, and the CPU from torch
    2.4 (pytorch/pytorch#123074; 2.3 raises for ``fused=True`` on CPU tensors). The fused kernel
    makes one pass over all parameters, 3x faster on the CPU than the per-tensor loop torch
    uses there by default."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and TorchVersion(torch.__version__) >= (2, 4)


def _make_accelerator(config: TrainConfig):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    cuda = torch.cuda.is_available() and not config.cpu
    if config.mixed_precision == "fp16" and not cuda:
        raise ValueError(
            "mixed_precision='fp16' needs a CUDA GPU (fp16 autocast does not run on CPU); use "
            "mixed_precision='bf16' on CPU, or 'no'."
        )
    if config.mixed_precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise ValueError("mixed_precision='bf16' is not supported by this GPU; use 'fp16' or 'no'.")
    kwargs = dict(cpu=not cuda, mixed_precision=config.mixed_precision)
    try:
        return Accelerator(**kwargs)
    except ValueError as err:
        # Accelerate keeps one global state per process; a second trainer with another
        # precision in the same single-process session must start it afresh
        if "already been initialized" not in str(err) or PartialState().num_processes > 1:
            raise
        AcceleratorState._reset_state()
        return Accelerator(**kwargs)


def _needs_initialization(model: nn.Module) -> bool:
    flags = [b for n, b in model.named_buffers() if n.rsplit(".", 1)[-1] == "initialized"]
    return not flags or not all(bool(b) for b in flags)


def _clone_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@contextmanager
def _holding(model: nn.Module, weights: dict[str, Tensor] | None) -> Iterator[None]:
    """``model`` with ``weights`` (if given) inside the block, its own weights after."""
    own = None if weights is None else _clone_state(model)
    if weights is not None:
        model.load_state_dict(weights)
    try:
        yield
    finally:
        if own is not None:
            model.load_state_dict(own)


class FlowTrainer:
    """Fit a flowaug model by maximum likelihood (bits/dim) on any Accelerate setup.

    Arguments:
        model: a :class:`~flowaug.flows.base.ConditionalFlow` (Glow, TabularFlow, ...).
        config: a :class:`TrainConfig` (default settings when ``None``).

    After :meth:`fit` the model holds the best validation weights (or the EMA / last weights
    without validation data) and is in eval mode; ``trainer.history`` holds the records.
    """

    def __init__(self, model: nn.Module, config: TrainConfig | None = None):
        for attr in ("log_prob", "prepare_batch", "bits_per_dim_from_log_prob", "event_shape"):
            if not hasattr(model, attr):
                raise TypeError(
                    f"model must be a flowaug ConditionalFlow (missing `{attr}`), got "
                    f"{type(model).__name__}."
                )
        config = TrainConfig() if config is None else config
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}.")
        self.model, self.config = model, config
        self.accelerator = _make_accelerator(config)
        self.history: History | None = None
        self._ssl = None
        self._root = None if config.output_dir is None else Path(config.output_dir) / "checkpoints"

    def fit(self, train: Any, val: Any = None, *, unlabelled: Any = None,
            resume_from: str | os.PathLike | None = None) -> History:  # fmt: skip
        """Train on ``train``, validating on ``val``; returns the :class:`History`.

        Args:
            train: anything :func:`flowaug.data.as_flow_data` accepts (tensors, arrays, a torch
                Dataset of ``(image, label)``, a ``datasets.Dataset``); integer images are
                dequantized with fresh noise every batch. Rows labelled ``-1`` (or
                ``(image, None)``) are unlabelled.
            val: validation data, scored with fixed dequantization noise so that evaluations
                compare; drives best-weights restore and early stopping. With unlabelled data,
                the flow's classification accuracy on it is recorded too (``val_accuracy``).
            unlabelled: more unlabelled examples (any form ``train`` takes; labels, if any, are
                ignored). A class-conditional model learns from them through its own class
                posterior (``config.semi_supervised``, see
                :mod:`flowaug.training.semi_supervised`); an unconditional one simply trains on
                them too.
            resume_from: a checkpoint folder, or ``"latest"`` for the newest complete one in
                ``output_dir/checkpoints`` (a fresh start when there is none). A damaged
                checkpoint (a file missing or not matching its hash) is refused, naming the
                newest intact one to pass instead.

        Raises:
            NonFiniteLossError: ``max_bad_steps`` consecutive non-finite steps.
            ValueError: the checkpoint to resume from is damaged, or of other settings.
        """
        device = self.accelerator.device
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            try:
                return self._fit(train, val, unlabelled, resume_from)
            finally:
                # free_memory collects garbage (1-2 s): only worth it for accelerator memory
                if device.type != "cpu":
                    self.accelerator.free_memory()

    def _fit(self, train: Any, val: Any, unlabelled: Any, resume_from: Any) -> History:
        from tqdm.auto import tqdm

        cfg, acc, model = self.config, self.accelerator, self.model
        batches = TrainBatches(model, train, unlabelled, cfg, acc.num_processes, acc.process_index)
        self._ssl = batches.ssl
        val_data = None if val is None else check_data(model, val, "val").labelled()
        state, objective, optimizer = self._start(batches, resume_from)
        val_loader = self._val_loader(val_data)
        quiet = not (cfg.progress and acc.is_main_process)
        bar = tqdm(total=cfg.max_steps, initial=state.step, disable=quiet, desc="flowaug fit",
                   dynamic_ncols=True)  # fmt: skip
        start = time.perf_counter() - state.elapsed
        objective.train()
        interrupted: KeyboardInterrupt | None = None
        restore_sigterm = raise_on_sigterm()
        try:
            while state.step < cfg.max_steps and not state.stopped_early:
                epoch = batches.epoch(state.step)
                loss = self._step(objective, optimizer, state, batches(state.step, acc.device))
                bar.update(1)
                if state.step % 10 == 0 and math.isfinite(loss):
                    bar.set_postfix(bpd=f"{loss:.3f}", refresh=False)
                evaluated = state.step % cfg.eval_every == 0 or state.step == cfg.max_steps
                if evaluated:
                    val_bpd = self._evaluate(state, val_loader, start, epoch)["val_bpd"]
                    if val_bpd is not None:
                        bar.set_postfix(bpd=f"{loss:.3f}", val=f"{val_bpd:.3f}", refresh=False)
                if cfg.checkpoint_every is not None and state.step % cfg.checkpoint_every == 0:
                    state.elapsed = time.perf_counter() - start
                    self._save_checkpoint(state, optimizer, batches.num_train)
                if cfg.max_time is not None and self._out_of_time(start):
                    if not evaluated:
                        self._evaluate(state, val_loader, start, epoch)
                    break
        except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: keep what was learned so far
            interrupted = err
        finally:
            bar.close()
            restore_sigterm()
        return self._finish(state, interrupted)

    # --- before the loop ---------------------------------------------------------------------
    def _start(self, batches: TrainBatches, resume_from: Any) -> tuple[RunState, Any, Any]:
        """A fresh or resumed run: ``(state, objective, optimizer)``, prepared by Accelerate."""
        cfg, acc, model = self.config, self.accelerator, self.model
        resume = find_checkpoint(resume_from, self._root, cfg.checkpoint_every is not None)
        if resume is None and _needs_initialization(model):
            self._initialize(batches.everything())
        levels = getattr(model, "levels", None) if batches.train.is_discrete else None
        objective, optimizer = acc.prepare(_NLLObjective(model, levels), self._optimizer())
        state = RunState()
        if resume is not None:
            state, ssl = load_state(resume, model, optimizer, self._run_meta(batches.num_train))
            if self._ssl is not None:
                self._ssl.load_state_tensors(ssl)
        # averaged and best weights live where the model now lives (after prepare)
        state.ema = None if cfg.ema_decay is None else state.ema or _clone_state(model)
        for attr in ("ema", "best"):
            if getattr(state, attr) is not None:
                setattr(state, attr, {k: v.to(acc.device) for k, v in getattr(state, attr).items()})
        return state, objective, optimizer

    @torch.no_grad()
    def _initialize(self, data: FlowData) -> None:
        """ActNorm data-dependent init from a seeded batch of the full training set.

        Every process draws the same batch and noise, so every process computes the same
        parameters before ``prepare`` (DDP then also broadcasts rank 0's).
        """
        model = self.model
        x, y = init_batch(model, data, self.config.seed, self.config.init_batch_size)
        model.initialize(x.to(model.device), None if y is None else y.to(model.device))

    def _optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = self.config.weight_decay
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]  # fmt: skip
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=self.config.lr,
                                 fused=_has_fused_adamw(self.accelerator.device))

    def _val_loader(self, data: FlowData | None) -> Any:
        if data is None or not len(data):
            return None
        self._val_levels = getattr(self.model, "levels", None) if data.is_discrete else None
        dataset = validation_set(self.model, data, self.config.seed)
        loader = torch.utils.data.DataLoader(dataset, self.config.eval_batch_size, shuffle=False)
        return self.accelerator.prepare_data_loader(loader, device_placement=True)

    # --- the loop ----------------------------------------------------------------------------
    def _lr(self, step: int) -> float:
        cfg = self.config
        scale = min(1.0, (step + 1) / (cfg.warmup_steps + 1))
        if cfg.schedule == "cosine" and cfg.max_steps > cfg.warmup_steps:
            span = cfg.max_steps - cfg.warmup_steps
            progress = min(1.0, max(0.0, (step - cfg.warmup_steps) / span))
            cosine = 0.5 * (1 + math.cos(math.pi * progress))
            scale *= cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine
        return cfg.lr * scale

    def _step(self, objective: Any, optimizer: Any, state: RunState, batch: Batch) -> float:
        """One optimizer step, skipped when the loss or a gradient is not finite; returns the
        loss averaged over processes."""
        cfg, acc, step = self.config, self.accelerator, state.step
        for group in optimizer.param_groups:
            group["lr"] = self._lr(step)
        torch.manual_seed(stream_seed(cfg.seed, "dropout", step, acc.process_index))
        with acc.autocast():
            bpd = objective(batch.x, batch.y)
            if batch.weights is None:
                loss = bpd.mean()
            else:  # the weighted mean over the global batch, whatever the processes
                loss = (bpd * batch.weights).sum() * acc.num_processes / batch.weight_sum
        acc.backward(loss)
        max_norm = cfg.grad_clip if cfg.grad_clip is not None else float("inf")
        grad_norm = acc.clip_grad_norm_(objective.parameters(), max_norm)
        mean_loss = float(acc.reduce(loss.detach().float(), "mean"))
        finite_grad = grad_norm is None or bool(torch.isfinite(grad_norm))
        if math.isfinite(mean_loss) and finite_grad:
            optimizer.step()
            state.consecutive_bad = 0
            state.train_sum += mean_loss
            state.train_count += 1
            self._update_ema(state)
        elif cfg.mixed_precision == "fp16" and math.isfinite(mean_loss):
            optimizer.step()  # the grad scaler skips the update and lowers its scale
        else:
            state.bad_steps += 1
            state.consecutive_bad += 1
            if state.consecutive_bad >= cfg.max_bad_steps:
                raise NonFiniteLossError(
                    f"step {step}: {state.consecutive_bad} consecutive steps with a "
                    f"non-finite loss or gradient (loss={mean_loss}); lower lr, set "
                    "grad_clip, or check the data and model for NaN/inf."
                )
        optimizer.zero_grad(set_to_none=True)
        state.step = step + 1
        return mean_loss

    @torch.no_grad()
    def _update_ema(self, state: RunState) -> None:
        if state.ema is None:
            return
        averaged, values = [], []
        for name, value in self.model.state_dict().items():
            avg = state.ema[name]
            if avg.is_floating_point():
                averaged.append(avg)
                values.append(value)
            else:
                avg.copy_(value)
        torch._foreach_lerp_(averaged, values, 1.0 - self.config.ema_decay)

    def _out_of_time(self, start: float) -> bool:
        """Whether ``max_time`` has passed, decided identically on every process."""
        over = torch.tensor(float(time.perf_counter() - start >= self.config.max_time))
        if self.accelerator.num_processes > 1:
            over = self.accelerator.reduce(over.to(self.accelerator.device), "max").cpu()
        return bool(over > 0)

    @torch.no_grad()
    def _evaluate(self, state: RunState, loader: Any, start: float, epoch: int) -> dict[str, Any]:
        """Append a record (validation bits/dim with ``loader``, scored with the EMA weights
        when there are some) and keep the best weights; early stopping decides here."""
        cfg, model = self.config, self.model
        val_bpd = val_accuracy = None
        if loader is not None:
            with _holding(model, state.ema), evaluating(model):
                val_bpd, val_accuracy = self._validate(loader)
                best = state.best_val
                if math.isfinite(val_bpd) and (best is None or val_bpd < best - cfg.min_delta):
                    state.best_val, state.best_step = val_bpd, state.step
                    state.best = _clone_state(model)
                    state.evals_since_best = 0
                else:
                    state.evals_since_best += 1
                    if cfg.patience is not None and state.evals_since_best >= cfg.patience:
                        state.stopped_early = True
        record = {
            "step": state.step,
            "epoch": epoch,
            "train_bpd": state.train_sum / state.train_count if state.train_count else None,
            "val_bpd": val_bpd,
            "lr": self._lr(state.step - 1),
            "time": round(time.perf_counter() - start, 3),
            "bad_steps": state.bad_steps,
        }
        if self._ssl is not None:
            record["val_accuracy"] = val_accuracy
            record["class_prior"] = [round(float(v), 6) for v in self._ssl.prior]
        state.records.append(record)
        state.train_sum, state.train_count = 0.0, 0
        self._save_history(state)
        return record

    def _validate(self, loader: Any) -> tuple[float, float | None]:
        """``(mean bits/dim, the flow's own classification accuracy or None)``."""
        acc, model = self.accelerator, self.model
        scores, hits = [], []
        for x, y in loader:
            labels = y if getattr(model, "num_classes", 0) else None
            with acc.autocast():
                log_prob = model.log_prob(x, labels).float()
                if self._ssl is not None:  # the flow's own Bayes classifier
                    pred = model.class_log_prob(x).argmax(1)
                    hits.append(acc.gather_for_metrics((pred == y).float()))
            bpd = model.bits_per_dim_from_log_prob(log_prob, self._val_levels)
            scores.append(acc.gather_for_metrics(bpd))
        return float(torch.cat(scores).mean()), float(torch.cat(hits).mean()) if hits else None

    # --- after the loop, and checkpoints -----------------------------------------------------
    def _finish(self, state: RunState, interrupted: KeyboardInterrupt | None) -> History:
        cfg, model = self.config, self.model
        if state.best is not None or state.ema is not None:
            model.load_state_dict(state.best if state.best is not None else state.ema)
        model.eval()
        signum = None if interrupted is None else signum_of(interrupted)
        history = self._save_history(state, signum)
        if cfg.output_dir is not None and self.accelerator.is_main_process:
            save_model(model, cfg.output_dir)  # the weights it ends with: flowaug.load(dir)
            # what writes killed in an earlier run of this output_dir left behind
            clear_stale_temporaries(cfg.output_dir, ["history.json"])
            clear_stale_checkpoints(self._root)
        if interrupted is not None:  # no wait_for_everyone: the other ranks may be gone
            raise TrainingInterrupted(history.interrupted, history, cfg.output_dir) from interrupted
        self.accelerator.wait_for_everyone()
        return history

    def _save_history(self, state: RunState, interrupted: int | None = None) -> History:
        """The :class:`History` so far, written to ``output_dir/history.json`` if set."""
        self.history = state.history(interrupted)
        if self.config.output_dir is not None and self.accelerator.is_main_process:
            Path(self.config.output_dir).mkdir(parents=True, exist_ok=True)
            self.history.save(Path(self.config.output_dir) / "history.json")
        return self.history

    def _run_meta(self, num_train: int) -> dict[str, Any]:
        model_config = getattr(self.model, "config", None)
        return dict(config=self.config.to_dict(), num_train=num_train, model_config=model_config)

    def _save_checkpoint(self, state: RunState, optimizer: Any, num_train: int) -> None:
        cfg, acc = self.config, self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            ssl = None if self._ssl is None else self._ssl.state_tensors()
            meta = self._run_meta(num_train)
            save_state(self._root, state, self.model, optimizer, meta, ssl, cfg.keep_checkpoints)
        acc.wait_for_everyone()
