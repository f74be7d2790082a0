"""A Hugging Face datasets pipeline: image dataset -> flow -> synthetic rows -> DataLoader -> CNN.

Run:  python recipes/hf_pipeline.py [--k 20] [--ratio 1.0] [--steps 400] [--seed 0]
      python recipes/hf_pipeline.py --quick        # a few seconds: tiny flow, few steps

Nothing is downloaded: the ``datasets.Dataset`` is built in memory from scikit-learn's digits,
as 8-bit PIL images in an ``Image`` column with a ``ClassLabel`` column, the shape of most image
datasets on the Hub. The steps:

1. ``flowaug.fit(train_ds, ...)`` reads the dataset directly (Image + ClassLabel columns);
2. ``flowaug.hf.augment_dataset(train_ds, model, ratio=...)`` returns the real rows plus
   synthetic rows with the same ``Features`` and an ``is_synthetic`` column (deterministic for a
   seed, cached by the datasets library, ``save_to_disk``-able);
3. ``with_transform`` turns PIL images into float tensors when rows are read;
4. a torch ``DataLoader`` batches them and a small CNN trains for ``--steps`` steps; the loop
   counts the synthetic rows it sees through ``is_synthetic``.

The same CNN trained on the real rows alone, for the same number of steps, is the reference.
"""

from __future__ import annotations

import argparse
from collections import Counter

import datasets
import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor, nn
from torchvision.transforms import v2

import flowaug
from flowaug import TrainConfig
from flowaug.hf import augment_dataset


def digits_dataset(images: np.ndarray, labels: np.ndarray) -> datasets.Dataset:
    """An in-memory ``datasets.Dataset`` of 8x8 grayscale PIL images and ``ClassLabel`` labels.

    Args:
        images: ``[N, 8, 8]`` intensities 0..16 (scikit-learn's digits), scaled to 0..255.
        labels: ``[N]`` classes 0..9.
    """
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=[str(d) for d in range(10)]),
        }
    )
    pixels = np.round(images * (255.0 / 16.0)).astype(np.uint8)
    pil = [PIL.Image.fromarray(p, mode="L") for p in pixels]
    return datasets.Dataset.from_dict({"image": pil, "label": labels.tolist()}, features=features)


_TO_TENSOR = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])


def to_tensors(batch: dict[str, list]) -> dict[str, list]:
    """``with_transform`` function: PIL images -> float tensors ``[1, 8, 8]`` in ``[0, 1]``.

    datasets always hands it a batch (a dict of lists), also for ``ds[0]``; columns not returned
    are dropped from what the DataLoader sees.
    """
    out = {
        "pixel_values": [_TO_TENSOR(img).as_subclass(Tensor) for img in batch["image"]],
        "label": batch["label"],
    }
    if "is_synthetic" in batch:
        out["is_synthetic"] = batch["is_synthetic"]
    return out


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.25),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def train(
    ds: datasets.Dataset, steps: int, batch_size: int, seed: int
) -> tuple[nn.Module, int, int]:
    """Train a small CNN for ``steps`` steps on a dataset with the ``to_tensors`` transform.

    Returns:
        the network, and how many real and synthetic rows the loop consumed.
    """
    torch.manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=True,
        drop_last=len(ds) > batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    net = small_cnn()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    seen: Counter[str] = Counter()
    step = 0
    while step < steps:
        for batch in loader:
            synthetic = batch.get("is_synthetic", torch.zeros(len(batch["label"]), dtype=bool))
            seen["synthetic"] += int(synthetic.sum())
            seen["real"] += int((~synthetic).sum())
            loss = F.cross_entropy(net(batch["pixel_values"]), batch["label"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step == steps:
                break
    return net.eval(), seen["real"], seen["synthetic"]


@torch.no_grad()
def accuracy(net: nn.Module, ds: datasets.Dataset) -> float:
    batch = ds[:]
    x = torch.stack(batch["pixel_values"])
    return float((net(x).argmax(1) == torch.as_tensor(batch["label"])).float().mean())


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=20, help="labelled images per class")
    parser.add_argument("--ratio", type=float, default=1.0, help="synthetic rows per real row")
    parser.add_argument("--steps", type=int, default=400, help="CNN optimizer steps")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--flow-steps", type=int, default=300, help="flow training steps")
    parser.add_argument("--temperature", type=float, default=0.6, help="sampling temperature")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None, help="datasets cache (default: its own)")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny flow, few steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.flow_steps = 20, 5

    digits = load_digits()
    train_pool, test_idx = train_test_split(
        np.arange(len(digits.target)), test_size=0.3, stratify=digits.target, random_state=0
    )
    rng = np.random.default_rng(args.seed)
    labelled = np.sort(
        np.concatenate(
            [
                rng.choice(train_pool[digits.target[train_pool] == c], args.k, replace=False)
                for c in range(10)
            ]
        )
    )
    train_ds = digits_dataset(digits.images[labelled], digits.target[labelled])
    test_ds = digits_dataset(digits.images[test_idx], digits.target[test_idx])
    print(f"train: {train_ds}\nfeatures: {train_ds.features}")

    # 1. fit: the flow reads the Image and ClassLabel columns itself (8-bit images: 256 levels)
    config = TrainConfig(
        batch_size=min(64, len(train_ds)),
        max_steps=args.flow_steps,
        warmup_steps=min(50, args.flow_steps // 5),
        weight_decay=1e-3,
        eval_every=args.flow_steps,
        patience=None,
        seed=args.seed,
        progress=False,
    )
    model = flowaug.fit(
        train_ds, val_fraction=0, config=config, seed=args.seed, depth=4, hidden=32, dropout=0.1
    )

    # 2. real rows + synthetic rows, marked
    augmented = augment_dataset(
        train_ds,
        model,
        ratio=args.ratio,
        seed=args.seed,
        temperature=args.temperature,
        progress=False,
        cache_dir=args.cache_dir,
    )
    flags = np.asarray(augmented["is_synthetic"])
    labels = np.asarray(augmented["label"])
    print(f"\naugmented: {augmented.num_rows} rows, {int(flags.sum())} synthetic")
    print(f"features: {augmented.features}")
    print("synthetic rows per class:", dict(Counter(labels[flags].tolist())))
    # synthetic rows keep the Image feature: PIL images of the same mode and size
    first = augmented[int(np.flatnonzero(flags)[0])]
    print(f"a synthetic row: {first}")

    # 3. + 4. with_transform -> DataLoader -> training, real only and augmented
    test_view = test_ds.with_transform(to_tensors)
    net_real, real_seen, _ = train(
        train_ds.with_transform(to_tensors), args.steps, args.batch_size, args.seed
    )
    net_aug, aug_real, aug_synth = train(
        augmented.with_transform(to_tensors), args.steps, args.batch_size, args.seed
    )
    results = {
        "real_rows": float(len(train_ds)),
        "synthetic_rows": float(flags.sum()),
        "synthetic_first_index": float(np.flatnonzero(flags)[0]),
        "synthetic_share_seen": aug_synth / max(aug_real + aug_synth, 1),
        "accuracy_real_only": accuracy(net_real, test_view),
        "accuracy_augmented": accuracy(net_aug, test_view),
    }
    print(
        f"\nthe augmented run drew {aug_real} real and {aug_synth} synthetic rows "
        f"({100 * results['synthetic_share_seen']:.0f}% synthetic)"
    )
    print(
        f"test accuracy, {args.steps} steps each: real only "
        f"{100 * results['accuracy_real_only']:.1f}%, real + synthetic "
        f"{100 * results['accuracy_augmented']:.1f}%"
    )
    return results


if __name__ == "__main__":
    main()
