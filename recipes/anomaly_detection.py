"""Anomaly detection with a flow's exact log-likelihood, scored by ROC AUC.

Run:  python recipes/anomaly_detection.py [--steps 600] [--holdout-class 9] [--seed 0]

A class-conditional Glow is fitted on scikit-learn's digits *without* one class (the hold-out
class). Its anomaly score is the negative log marginal likelihood, ``-log sum_c p(x|c) p(c)``,
which the flow gives exactly. Inliers are unseen test digits of the known classes; outliers are
(a) digits of the hold-out class, (b) test digits with 30% of pixels replaced by noise, (c)
inverted test digits. The script prints the ROC AUC for each kind of outlier.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

import flowaug
from flowaug.data import load_sklearn
from flowaug.pixels import dequantize
from flowaug.training import default_config

LEVELS = 17


@torch.no_grad()
def anomaly_score(model: flowaug.Glow, x_int: torch.Tensor, seed: int = 0) -> np.ndarray:
    """``-log p(x)`` in bits/dim under the class mixture (uniform class prior), ``[N]``."""
    gen = torch.Generator().manual_seed(seed)
    x01 = dequantize(x_int, LEVELS, generator=gen)
    log_joint = model.class_log_prob(x01) - math.log(model.num_classes)
    log_marginal = torch.logsumexp(log_joint, dim=1)
    return model.bits_per_dim_from_log_prob(log_marginal, LEVELS).numpy()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600, help="maximum training steps")
    parser.add_argument("--holdout-class", type=int, default=9, help="class never trained on")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    digits = load_sklearn("digits")
    x, y = digits.x, digits.y
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=0.3, stratify=y.numpy(), random_state=0
    )
    known = y[train_idx] != args.holdout_class
    x_train, y_train = x[train_idx][known], y[train_idx][known]
    # relabel the known classes to 0..K-1 so the model has no empty class
    classes = sorted(set(y_train.tolist()))
    relabel = {c: i for i, c in enumerate(classes)}
    y_train = torch.tensor([relabel[int(c)] for c in y_train])

    config = default_config(len(y_train), seed=args.seed, max_steps=args.steps,
                                    progress=False)
    model = flowaug.fit((x_train, y_train), config=config, seed=args.seed, levels=LEVELS,
                        dropout=0.2)

    x_test, y_test = x[test_idx], y[test_idx]
    inliers = x_test[y_test != args.holdout_class]
    gen = torch.Generator().manual_seed(args.seed)
    noisy = inliers.clone()
    mask = torch.rand(noisy.shape, generator=gen) < 0.3
    noisy[mask] = torch.randint(0, LEVELS, (int(mask.sum()),), generator=gen)
    outlier_sets = {
        f"unseen class {args.holdout_class}": x_test[y_test == args.holdout_class],
        "30% pixel noise": noisy,
        "inverted": (LEVELS - 1) - inliers,
    }
    inlier_score = anomaly_score(model, inliers)
    print(f"inliers: {len(inliers)} test digits, mean score {inlier_score.mean():.3f} bits/dim")
    results = {}
    for name, outliers in outlier_sets.items():
        score = anomaly_score(model, outliers)
        labels = np.r_[np.zeros(len(inlier_score)), np.ones(len(score))]
        auc = roc_auc_score(labels, np.r_[inlier_score, score])
        results[name] = float(auc)
        print(f"{name:>18s}: {len(outliers):4d} images, mean score {score.mean():7.3f} "
              f"bits/dim, ROC AUC {auc:.3f}")
    return results


if __name__ == "__main__":
    main()
