"""Overhead benchmark: what FlowAugment costs in a DataLoader over scikit-learn's digits.

Run:  python benchmarks/overhead.py [--repeats 15] [--quick]

Protocol:
- digits 8x8 (1797 images), as uint8 tensors (levels 0..16 scaled to 0..255) and as float32
  tensors in [0, 1]; a map-style dataset applies a joint ``transforms(image, label)`` like
  torchvision's v2 datasets; DataLoader(batch_size=64, shuffle=True, num_workers=0); one CPU
  thread (torch.set_num_threads(1)).
- loaders compared in the same run, interleaved round-robin (so drifts in machine load hit all
  alike), median epoch time over ``--repeats`` epochs after one warm-up epoch:
  plain (no transform) | v2.Compose([v2.Identity()]) (the cost of the v2 machinery alone) |
  v2.Compose([FlowAugment(resample, bank, p=0.5)]) |
  v2.Compose([v2.RandomAffine(10, translate=(0.1, 0.1))]) | plain + FlowAugment per batch
  (``aug(images, labels)`` on each batch after the loader, p=0.5); each loader alone and with
  one SGD step of a small CNN per batch.
- per-batch throughput (images/s through ``aug(images, labels)``, p=1) for resample (bank) and
  latent modes.
- the flow is an untrained, ActNorm-initialized Glow((1, 8, 8), 10, depth=4, hidden=32,
  levels=17): costs of the bank path do not depend on training; latent mode's cost depends on
  the architecture only.

Writes benchmarks/results/overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 64


class DigitsDataset(Dataset):
    """Images ``[1, 8, 8]`` and int labels; ``transforms(image, label)`` applied per sample."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transforms=None):
        self.images, self.labels = images, labels.tolist()
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        image, label = self.images[i], self.labels[i]
        if self.transforms is not None:
            image, label = self.transforms(image, label)
        return image, label


def load_digits_tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    levels = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1)  # 0..16
    as_uint8 = (levels * (255 / 16)).round().to(torch.uint8)
    as_float = levels / 16
    return as_uint8, as_float, torch.tensor(digits.target)


def make_model():
    from flowaug import Glow

    torch.manual_seed(0)
    model = Glow((1, 8, 8), 10, depth=4, hidden=32, levels=17)
    _, x, y = load_digits_tensors()
    model.initialize(((x * 16).round() + torch.rand_like(x)) / 17, y)
    return model.eval()


class SmallCNN(torch.nn.Module):
    """The classifier of the 'with a training step' columns: 2 conv layers + a linear head."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Flatten(),
            torch.nn.Linear(32 * 8 * 8, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_step():
    """One SGD step of :class:`SmallCNN` on a batch (uint8 batches are scaled to [0, 1])."""
    torch.manual_seed(0)
    net = SmallCNN()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        x = images.float() / 255 if images.dtype == torch.uint8 else images
        loss = torch.nn.functional.cross_entropy(net(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def epoch_time(loader: DataLoader, per_batch=None, step=None) -> float:
    start = time.perf_counter()
    for images, labels in loader:
        if per_batch is not None:
            images, labels = per_batch(images, labels)
        if step is not None:
            step(images, labels)
    return time.perf_counter() - start


def run_loaders(model, repeats: int) -> dict:
    from flowaug import FlowAugment

    as_uint8, as_float, labels = load_digits_tensors()
    start = time.perf_counter()
    aug = FlowAugment(model, p=0.5, mode="resample", bank=True, bank_size=256, seed=0)
    bank_seconds = time.perf_counter() - start
    batch_aug = FlowAugment(model, p=0.5, mode="resample", bank=aug.bank, seed=1)
    affine = v2.RandomAffine(degrees=10, translate=(0.1, 0.1))
    step = make_step()
    results = {"bank_build_seconds": bank_seconds, "bank_size_per_class": 256}
    for dtype_name, images in (("uint8", as_uint8), ("float32", as_float)):
        configs = {
            "plain": (None, None),
            "v2.Identity per sample (Compose): the floor of any v2 transform": (
                v2.Compose([v2.Identity()]),
                None,
            ),
            "FlowAugment per sample (Compose, bank, p=0.5)": (v2.Compose([aug]), None),
            "RandomAffine per sample (Compose)": (v2.Compose([affine]), None),
            "FlowAugment per batch (after loader, bank, p=0.5)": (None, batch_aug),
        }
        runs = {}
        for name, (transforms, per_batch) in configs.items():
            loader = DataLoader(
                DigitsDataset(images, labels, transforms),
                batch_size=BATCH,
                shuffle=True,
                generator=torch.Generator().manual_seed(0),
            )
            runs[(name, "loader")] = (loader, per_batch, None)
            runs[(name, "step")] = (loader, per_batch, step)
        times: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
        for run in runs.values():
            epoch_time(*run)  # warm-up
        for _ in range(repeats):
            for key, run in runs.items():
                times[key].append(epoch_time(*run))
        rows = {}
        for name in configs:
            row = {}
            for kind in ("loader", "step"):
                plain = statistics.median(times[("plain", kind)])
                median = statistics.median(times[(name, kind)])
                row[kind] = {
                    "median_epoch_ms": 1e3 * median,
                    "min_epoch_ms": 1e3 * min(times[(name, kind)]),
                    "overhead_vs_plain_pct": 100 * (median / plain - 1),
                    "us_per_image_over_plain": 1e6 * (median - plain) / len(images),
                }
            rows[name] = row
        results[dtype_name] = rows
    return results


def run_throughput(model, repeats: int) -> dict:
    from flowaug import FlowAugment

    _, as_float, labels = load_digits_tensors()
    bank_aug = FlowAugment(model, p=1.0, mode="resample", bank=True, bank_size=256, seed=0)
    latent_aug = FlowAugment(model, p=1.0, mode="latent", strength=0.5, seed=0)
    out = {}
    for name, aug in (("resample (bank)", bank_aug), ("latent", latent_aug)):
        for batch in (64, 256):
            images, ys = as_float[:batch], labels[:batch]
            aug(images, ys)  # warm-up
            runs = []
            for _ in range(repeats):
                start = time.perf_counter()
                aug(images, ys)
                runs.append(time.perf_counter() - start)
            median = statistics.median(runs)
            out[f"{name}, batch {batch}"] = {
                "median_ms": 1e3 * median,
                "images_per_s": batch / median,
            }
    return out


def to_markdown(report: dict) -> str:
    lines = [
        "# FlowAugment overhead in a DataLoader (scikit-learn digits, 8x8)",
        "",
        f"Command: `{report['command']}`",
        "",
        f"One CPU thread, batch {BATCH}, num_workers=0, median of {report['repeats']} epochs per "
        "loader, loaders interleaved round-robin in one run. Model: an untrained, "
        "ActNorm-initialized Glow((1, 8, 8), 10, depth=4, hidden=32, levels=17) (the bank path "
        "costs the same trained or not). Bank: 256 samples per class, built once in "
        f"{report['loaders']['bank_build_seconds']:.2f} s (not in the epoch times). "
        f"Machine: {report['machine']} (shared with other jobs; absolute times are noisy).",
        "",
        "'overhead' is the median epoch time relative to the plain loader of the same column; "
        "'us/image' is the added time per image. 'With a training step' adds one SGD step of a "
        "small CNN (2 conv layers + linear head) per batch, the setting the overhead matters in.",
        "",
    ]
    for dtype in ("uint8", "float32"):
        lines += [
            f"## Epoch time, {dtype} images",
            "",
            "| loader | epoch, loader only (ms) | overhead | us/image | epoch with a training "
            "step (ms) | overhead |",
            "|---|---|---|---|---|---|",
        ]
        for name, row in report["loaders"][dtype].items():
            a, b = row["loader"], row["step"]
            lines.append(
                f"| {name} | {a['median_epoch_ms']:.1f} | {a['overhead_vs_plain_pct']:+.1f}% | "
                f"{a['us_per_image_over_plain']:.1f} | {b['median_epoch_ms']:.1f} | "
                f"{b['overhead_vs_plain_pct']:+.1f}% |"
            )
        lines.append("")
    lines += [
        "## Per-batch throughput (`aug(images, labels)`, p=1, float32)",
        "",
        "| mode | median per batch (ms) | images/s |",
        "|---|---|---|",
    ]
    for name, row in report["throughput"].items():
        lines.append(f"| {name} | {row['median_ms']:.2f} | {row['images_per_s']:,.0f} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="epochs per loader (median)")
    parser.add_argument("--quick", action="store_true", help="3 repeats, for a smoke test")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    torch.set_num_threads(1)
    model = make_model()
    report = {
        "command": "python benchmarks/overhead.py"
        + (" " + " ".join(argv or sys.argv[1:])).rstrip(),
        "repeats": repeats,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, torch {torch.__version__}",
        "model": "Glow((1, 8, 8), 10, depth=4, hidden=32, levels=17), untrained, initialized",
        "loaders": run_loaders(model, repeats),
        "throughput": run_throughput(model, repeats),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "overhead.json").write_text(json.dumps(report, indent=2))
    (args.out / "overhead.md").write_text(to_markdown(report))
    print(to_markdown(report))
    return report


if __name__ == "__main__":
    main()
