"""Few labels, many images: a flow that learns from the unlabelled ones, on scikit-learn's digits.

Run:  python recipes/semi_supervised.py [--k 5] [--seed 0]     # a few minutes on a CPU
      python recipes/semi_supervised.py --quick                # seconds: tiny budgets

The digits are split 70/30 (stratified, random_state=0). From the 70% part, ``k`` images per class
keep their labels; every other image of the 70% is handed over *without* its label. One call fits
a class-conditional Glow on both::

    model = flowaug.fit(labelled, unlabelled=images_without_labels, ...)

(the unlabelled images enter through the flow's own class posterior: see
``flowaug.training.semi_supervised``). The same small CNN then trains for the same number of
steps with classical augmentation (``v2.RandomAffine``) alone and with the flow's
class-conditional samples on top (``FlowAugment(mode="resample")``), and the flow's own Bayes
classifier is scored too.
The script prints the test accuracy of each; ``benchmarks/semi_supervised.py`` runs the same
comparison over k = 5, 10, 20 and 5 seeds, with more arms (a flow fitted on the k images only,
transfer, self-training) and its measured results in ``benchmarks/results/semi_supervised.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import flowaug
from flowaug import FlowAugment, TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scarce_digits recipe's pieces
from scarce_digits import LEVELS, classical_augment, print_table, run_arms, split_digits  # noqa: E402

ARMS = ("real", "classical", "classical + flowaug (semi-supervised)", "flow's own classifier")


def fit_semi_supervised(
    x: torch.Tensor, y: torch.Tensor, pool: torch.Tensor, steps: int, seed: int, cpu: bool
) -> flowaug.Glow:
    """A class-conditional Glow fitted on ``(x, y)`` and the unlabelled images ``pool``."""
    config = TrainConfig(
        batch_size=64,
        max_steps=steps,
        warmup_steps=min(50, steps // 5),
        lr=2e-3,
        weight_decay=1e-3,
        ema_decay=0.99,
        eval_every=50,
        patience=None,
        unlabelled_start=min(100, steps // 3),  # labelled-only first: the posterior must mean
        refresh_every=50,  # something before it labels the pool
        seed=seed,
        progress=False,
        cpu=cpu,
    )
    return flowaug.fit(
        (x, y), unlabelled=pool, val_fraction=0, config=config, seed=seed, levels=LEVELS,
        depth=4, hidden=32, dropout=0.2,
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=5, help="labelled images per class")
    parser.add_argument("--steps", type=int, default=1500, help="CNN optimizer steps (every arm)")
    parser.add_argument("--batch-size", type=int, default=32, help="CNN batch size")
    parser.add_argument("--flow-steps", type=int, default=600, help="flow training steps")
    parser.add_argument("--p", type=float, default=0.5, help="share of each batch replaced")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device", default=None, help="training device (default: cuda if available, else cpu)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny budgets")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.flow_steps = 60, 12
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    digits, train_pool, test_idx, labelled = split_digits(args.k, args.seed)
    unlabelled = np.setdiff1d(train_pool, labelled)  # their labels are never read
    x_int, y = digits.x[labelled], digits.y[labelled]
    x01 = x_int.float() / (LEVELS - 1)
    x_test, y_test = digits.x[test_idx].float() / (LEVELS - 1), digits.y[test_idx]
    print(
        f"{len(labelled)} labelled images ({args.k} per class), {len(unlabelled)} unlabelled, "
        f"{len(test_idx)} test images"
    )

    start = time.perf_counter()
    model = fit_semi_supervised(
        x_int, y, digits.x[unlabelled], args.flow_steps, args.seed, device.type == "cpu"
    )
    print(f"flow fitted in {time.perf_counter() - start:.1f} s ({args.flow_steps} steps)")
    x_test01 = model.prepare_batch(digits.x[test_idx], generator=torch.Generator().manual_seed(0))
    results = {
        "flow's own classifier": float(
            (model.classify(x_test01).argmax(1) == y_test).float().mean()
        )
    }
    model.to(device)
    flow_aug = FlowAugment(model, p=args.p, mode="resample", seed=args.seed)
    arms = {
        "real": [],
        "classical": [classical_augment()],
        "classical + flowaug (semi-supervised)": [flow_aug, classical_augment()],
    }
    results.update(run_arms(arms, x01, y, x_test, y_test, args, device))
    print_table(results, ARMS, f"k={args.k} per class, {args.steps} CNN steps, seed {args.seed}")
    return results


if __name__ == "__main__":
    main()
