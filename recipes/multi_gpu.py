"""Fit a class-conditional Glow on digits with one process or many: FlowTrainer owns the devices.

Run:
  one process (CPU, or one GPU if present):
      python recipes/multi_gpu.py [--steps 600] [--batch-size 64] [--output-dir runs/digits]
  N GPUs on one machine (edit num_processes in the config, or override it):
      accelerate launch --config_file recipes/accelerate_config.yaml --num_processes N \\
          recipes/multi_gpu.py
  2 CPU processes (gloo), e.g. to try the multi-process path on a laptop:
      ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 recipes/multi_gpu.py --cpu
  Note: `accelerate launch --cpu --num_processes 2` starts ONE process; use torchrun for CPU ranks.
  Smoke run (seconds): add --quick.

The script has no device or process logic of its own: it builds a Glow and a TrainConfig and
calls ``FlowTrainer.fit``, which wraps everything in ``accelerate.Accelerator``. ``--batch-size``
is the *global* batch (it must divide by the number of processes): each process takes its slice
of the same batch, so one process and many follow the same trajectory and end with the same
weights (up to floating-point reduction order). The test part is then scored in shards, one per
process, gathered with ``gather_for_metrics``; the main process prints and saves. Data:
scikit-learn's digits, split 70/30 (stratified, random_state=0), 15% of the 70% for validation
(best-weights restore and early stopping).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from flowaug import FlowTrainer, Glow, TrainConfig
from flowaug.data import load_sklearn
from flowaug.pixels import dequantize


def splits(seed: int = 0):
    """Digits as ``FlowData``: train, validation and test parts."""
    data = load_sklearn("digits")
    y = data.y.numpy()
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=0.3, stratify=y, random_state=0
    )
    fit_idx, val_idx = train_test_split(
        train_idx, test_size=0.15, stratify=y[train_idx], random_state=seed
    )
    return data.subset(fit_idx), data.subset(val_idx), data.subset(test_idx)


@torch.no_grad()
def sharded_bits_per_dim(trainer: FlowTrainer, x_int: torch.Tensor, y: torch.Tensor) -> float:
    """Mean test bits/dim, each process scoring its shard of the test set.

    The dequantization noise is drawn once, before sharding, so the number does not depend on
    the number of processes.
    """
    acc, model = trainer.accelerator, trainer.model
    x01 = dequantize(x_int, model.levels, generator=torch.Generator().manual_seed(0))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x01, y), batch_size=256, shuffle=False
    )
    loader = acc.prepare_data_loader(loader, device_placement=True)
    scores = []
    for xb, yb in loader:
        bpd = model.bits_per_dim_from_log_prob(model.log_prob(xb, yb), model.levels)
        scores.append(acc.gather_for_metrics(bpd))
    return float(torch.cat(scores).mean())


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600, help="maximum optimizer steps")
    parser.add_argument("--batch-size", type=int, default=64, help="global batch size")
    parser.add_argument("--eval-every", type=int, default=50, help="steps between validations")
    parser.add_argument("--depth", type=int, default=8, help="flow steps per scale")
    parser.add_argument("--hidden", type=int, default=64, help="coupling network width")
    parser.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no")
    parser.add_argument("--cpu", action="store_true", help="train on CPU even with a GPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default=None, help="save the model and metrics.json here")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny model, few steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.eval_every, args.depth, args.hidden = 6, 3, 1, 8

    train, val, test = splits(args.seed)
    # the same seed on every process: DDP would broadcast rank 0's weights anyway, but equal
    # initial weights keep one process and many on the same trajectory
    torch.manual_seed(args.seed)
    model = Glow(
        (1, 8, 8), num_classes=10, depth=args.depth, hidden=args.hidden, levels=17, dropout=0.1
    )
    config = TrainConfig(
        batch_size=args.batch_size,
        max_steps=args.steps,
        warmup_steps=min(100, args.steps // 5),
        eval_every=args.eval_every,
        patience=10,
        mixed_precision=args.mixed_precision,
        seed=args.seed,
        cpu=args.cpu,
        progress=not args.quick,
    )
    trainer = FlowTrainer(model, config)
    acc = trainer.accelerator
    acc.print(
        f"{acc.num_processes} process(es), {acc.distributed_type}, device {acc.device}; "
        f"global batch {args.batch_size} = {acc.num_processes} x "
        f"{args.batch_size // max(acc.num_processes, 1)}"
    )
    history = trainer.fit(train, val)
    test_bpd = sharded_bits_per_dim(trainer, test.x, test.y)
    results = {
        "num_processes": float(acc.num_processes),
        "steps": float(history.steps),
        "best_val_bpd": float(history.best_val_bpd),
        "test_bpd": test_bpd,
    }
    acc.print(
        f"steps {history.steps} (best at {history.best_step}), validation "
        f"{history.best_val_bpd:.3f} bits/dim, test {test_bpd:.3f} bits/dim"
    )
    if args.output_dir is not None and acc.is_main_process:
        out = Path(args.output_dir)
        model.save_pretrained(str(out), class_names=train.class_names)
        facts = dict(results, distributed_type=str(acc.distributed_type))
        (out / "metrics.json").write_text(json.dumps(facts, indent=2) + "\n")
        acc.print(f"saved the model and metrics.json to {out}")
    acc.wait_for_everyone()
    return results


if __name__ == "__main__":
    main()
