"""A small CNN on k labelled digits per class, with and without FlowAugment.

Run:  python recipes/scarce_digits.py [--k 5] [--steps 1500] [--flow-steps 600] [--seed 0]
      python recipes/scarce_digits.py --quick      # a few seconds: tiny flow, few steps

scikit-learn's digits are split 70/30 (stratified, random_state=0); ``k`` images per class are
drawn from the 70% and are the only labelled data: the class-conditional Glow is fitted on them
alone (and on RandomAffine copies of them, ``--flow-copies``: the usual way to fit a generative
model on a handful of images), and the 30% test part is never seen by anything but the final
accuracy. The same small CNN is then trained for the same number of optimizer steps four ways:

- ``real``: the k images per class;
- ``classical``: each image through ``v2.RandomAffine`` (degrees 10, translate 0.1, scale 0.9-1.1);
- ``flowaug``: ``FlowAugment`` per batch, on the training device, swaps a fraction ``--p`` of
  every batch for flow variations of the same labels (synthetic data replaces part of the batch,
  it adds no steps);
- ``classical + flowaug``: FlowAugment first, then RandomAffine.

The script prints the test accuracy of each. The defaults (a flow fitted on 50 RandomAffine
copies for 600 steps; latent mode, p=0.5, strength=0.4, temperature=1.0) are the ones
``benchmarks/utility.py`` chose on validation images for classical + flowaug at k=5 in its
2026-11-25 run (its 2026-12-02 re-run chose ``--strength 0.8 --coarse-scales 1``). One seed is
noisy (a point of accuracy is five test images); that benchmark runs the comparison over several
k and seeds, with its measured results in ``benchmarks/results/utility.md``: on digits,
classical + flowaug ties classical augmentation (+0.2, +0.4, -0.1 points at k = 5, 10, 20), and
flowaug alone is no substitute for classical augmentation.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from torch import Tensor, nn
from torchvision.transforms import v2

import flowaug
from flowaug import FlowAugment, TrainConfig
from flowaug.data import load_sklearn

LEVELS = 17  # scikit-learn's digits hold intensities 0..16
ARMS = ("real", "classical", "flowaug", "classical + flowaug")


class SmallCNN(nn.Module):
    """Two 3x3 convolutions, a max-pool and two linear layers: ``[B, 1, 8, 8] -> [B, 10]``."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.25),
            nn.Linear(32 * 4 * 4, 64),
            nn.ReLU(),
            nn.Dropout(0.25),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class PerImage(nn.Module):
    """Apply a v2 transform to each image of a batch ``[B, C, H, W]`` with its own random draw
    (a v2 transform called on a batch draws one set of parameters for the whole batch)."""

    def __init__(self, transform: nn.Module):
        super().__init__()
        self.transform = transform

    def forward(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        return torch.stack([self.transform(img) for img in images]), labels


def classical_augment() -> PerImage:
    return PerImage(v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1)))


def labelled_subset(y: np.ndarray, pool: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` indices per class drawn from ``pool`` (indices into ``y``), sorted."""
    rng = np.random.default_rng(seed)
    picked = [rng.choice(pool[y[pool] == c], size=k, replace=False) for c in np.unique(y)]
    return np.sort(np.concatenate(picked))


def affine_copies(x: Tensor, copies: int, seed: int) -> Tensor:
    """``x`` (integer images ``[N, 1, 8, 8]``) followed by ``copies`` RandomAffine copies of it;
    nearest-neighbour interpolation keeps the values on the integer grid."""
    affine = classical_augment().transform
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        extra = [torch.stack([affine(img) for img in x]) for _ in range(copies)]
    return torch.cat([x, *extra])


def fit_flow(x: Tensor, y: Tensor, steps: int, copies: int, seed: int, cpu: bool) -> flowaug.Glow:
    """A small class-conditional Glow fitted on ``(x, y)`` (and affine copies) for ``steps``."""
    x_fit = affine_copies(x.to(torch.uint8), copies, seed)
    y_fit = y.repeat(copies + 1)
    config = TrainConfig(
        batch_size=min(64, len(y_fit)),
        max_steps=steps,
        warmup_steps=min(40, steps // 5),
        weight_decay=1e-3,
        eval_every=steps,
        patience=None,
        seed=seed,
        progress=False,
        cpu=cpu,
    )
    # no validation data: a fixed, small budget instead of early stopping, so that no labelled
    # image is held out of a set this small
    return flowaug.fit(
        (x_fit, y_fit),
        val_fraction=0,
        config=config,
        seed=seed,
        levels=LEVELS,
        depth=4,
        hidden=32,
        dropout=0.1,
    )


def train_classifier(
    x: Tensor,
    y: Tensor,
    augments: list,
    steps: int,
    batch_size: int,
    seed: int,
    device: torch.device,
) -> SmallCNN:
    """Train a :class:`SmallCNN` on images ``x`` (float ``[N, 1, 8, 8]`` in ``[0, 1]``) for
    ``steps`` Adam steps; each batch goes through ``augments`` (batch transforms
    ``(images, labels) -> (images, labels)``) on ``device``."""
    torch.manual_seed(seed)
    order = torch.Generator().manual_seed(seed)
    net = SmallCNN().to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    x, y = x.to(device), y.to(device)
    net.train()
    for _ in range(steps):
        index = torch.randint(len(y), (batch_size,), generator=order).to(device)
        images, labels = x[index], y[index]
        for augment in augments:
            images, labels = augment(images, labels)
        loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: nn.Module, x: Tensor, y: Tensor) -> float:
    device = next(net.parameters()).device
    return float((net(x.to(device)).argmax(1).cpu() == y).float().mean())


def split_digits(k: int, seed: int):
    """Digits, the 70% pool and 30% test indices (stratified, ``random_state=0``), and ``k``
    labelled indices per class drawn from the pool: ``(digits, pool, test, labelled)``."""
    digits = load_sklearn("digits")
    y_all = digits.y.numpy()
    pool, test = train_test_split(
        np.arange(len(y_all)), test_size=0.3, stratify=y_all, random_state=0
    )
    return digits, pool, test, labelled_subset(y_all, pool, k, seed)


def run_arms(arms: dict, x01: Tensor, y: Tensor, x_test: Tensor, y_test: Tensor, args, device):
    """Train the CNN once per arm (``{name: batch augments}``); ``{name: test accuracy}``."""
    results = {}
    for name, augments in arms.items():
        start = time.perf_counter()
        net = train_classifier(x01, y, augments, args.steps, args.batch_size, args.seed, device)
        results[name] = accuracy(net, x_test, y_test)
        print(f"  trained {name!r} in {time.perf_counter() - start:.1f} s")
    return results


def print_table(results: dict[str, float], order: tuple[str, ...], title: str) -> None:
    width = max(len(name) for name in order)
    print(f"\n{title}")
    print(f"{'arm':>{width}s}  {'test accuracy':>13s}")
    for name in order:
        print(f"{name:>{width}s}  {100 * results[name]:12.1f}%")


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=5, help="labelled images per class")
    parser.add_argument("--steps", type=int, default=1500, help="CNN optimizer steps (every arm)")
    parser.add_argument("--batch-size", type=int, default=32, help="CNN batch size")
    parser.add_argument("--flow-steps", type=int, default=600, help="flow training steps")
    parser.add_argument(
        "--flow-copies", type=int, default=50, help="RandomAffine copies per image the flow sees"
    )
    parser.add_argument("--mode", choices=("latent", "resample"), default="latent")
    parser.add_argument("--p", type=float, default=0.5, help="share of each batch replaced")
    parser.add_argument("--strength", type=float, default=0.4, help="latent mode: 0..1")
    parser.add_argument("--temperature", type=float, default=1.0, help="latent noise scale")
    parser.add_argument(
        "--coarse-scales",
        type=int,
        default=None,
        help="latent mode: vary only this many of the coarsest latent scales (default: all)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device", default=None, help="training device (default: cuda if available, else cpu)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny flow, few steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.flow_steps, args.flow_copies = 60, 5, 1
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    digits, _, test_idx, labelled = split_digits(args.k, args.seed)
    x_int, y = digits.x[labelled], digits.y[labelled]
    x01 = x_int.float() / (LEVELS - 1)  # torchvision's convention: float images in [0, 1]
    x_test, y_test = digits.x[test_idx].float() / (LEVELS - 1), digits.y[test_idx]
    print(f"{len(labelled)} labelled images ({args.k} per class), {len(test_idx)} test images")

    start = time.perf_counter()
    model = fit_flow(x_int, y, args.flow_steps, args.flow_copies, args.seed, device.type == "cpu")
    model.to(device)
    print(f"flow fitted in {time.perf_counter() - start:.1f} s ({args.flow_steps} steps)")
    flow_aug = FlowAugment(
        model,
        p=args.p,
        mode=args.mode,
        strength=args.strength,
        temperature=args.temperature,
        coarse_scales=args.coarse_scales,
        seed=args.seed,
    )
    arms = {
        "real": [],
        "classical": [classical_augment()],
        "flowaug": [flow_aug],
        "classical + flowaug": [flow_aug, classical_augment()],
    }
    results = run_arms(arms, x01, y, x_test, y_test, args, device)
    title = f"k={args.k} per class, {args.steps} steps, seed {args.seed}, {flow_aug!r}"
    print_table(results, ARMS, title)
    return results


if __name__ == "__main__":
    main()
