"""Confidence benchmark: how often the flow's own class differs from the true label.

Run:  python benchmarks/confidence.py [--steps 60 300] [--seeds 0 1 2]

FlowAugment given an image without its label (``ImageFolder(root, transform=FlowAugment(...))``)
replaces it under the class the flow assigns; where that class is wrong, the augmented image
and the sample's label disagree. It acts only where the flow's posterior ``max_c p(c | x)`` is
at least ``confidence``. This measures, for several thresholds, the share of images it acts on
(coverage) and the share of those whose argmax class differs from the true label (flips).

Protocol: scikit-learn's digits, stratified 70/30 split (``random_state=0``); a Glow fitted with
``flowaug.fit`` briefly (``--steps`` optimizer steps, the README's architecture: depth=2,
hidden=32, levels=17); posteriors on the 70% it was fitted on (the ImageFolder case: the flow
augments its own training images) and on the held-out 30%.

Writes benchmarks/results/confidence.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
THRESHOLDS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999)


def posteriors(model, x_levels: torch.Tensor) -> torch.Tensor:
    """Class posteriors ``[N, K]`` of level-code images ``[N, 1, 8, 8]`` (0..16), as FlowAugment
    computes them."""
    from flowaug.pixels import image_to_model

    with torch.no_grad():
        return torch.cat(
            [model.classify(image_to_model(x.float() / 16, 17)) for x in x_levels.split(256)]
        )


def measure(posterior: torch.Tensor, y: torch.Tensor) -> list[dict]:
    conf, cls = posterior.max(1)
    rows = []
    for t in THRESHOLDS:
        acted = conf >= t
        flips = int((cls[acted] != y[acted]).sum())
        rows.append(
            dict(
                threshold=t,
                coverage=float(acted.float().mean()),
                flip_rate=flips / max(1, int(acted.sum())),
                flips=flips,
                acted=int(acted.sum()),
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[60, 300])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)

    from sklearn.model_selection import train_test_split

    import flowaug
    from flowaug.data import load_sklearn
    from flowaug.training import default_config

    digits = load_sklearn("digits")
    index = np.arange(len(digits.y))
    train, test = train_test_split(index, test_size=0.3, stratify=digits.y.numpy(), random_state=0)
    results = []
    for steps in args.steps:
        for seed in args.seeds:
            data = digits.subset(train)
            config = default_config(len(train), seed=seed, max_steps=steps, progress=False)
            model = flowaug.fit(data, config=config, seed=seed, levels=17, depth=2, hidden=32)
            for part, idx in (("train", train), ("test", test)):
                rows = measure(posteriors(model, digits.x[idx]), digits.y[idx])
                for row in rows:
                    results.append(dict(steps=steps, seed=seed, part=part, **row))
                print(
                    steps,
                    seed,
                    part,
                    [(r["threshold"], r["coverage"], r["flip_rate"]) for r in rows],
                )

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "confidence.json").write_text(json.dumps(results, indent=1))
    lines = [
        "# FlowAugment without labels: coverage and label flips by confidence threshold",
        "",
        "Digits, 70/30 split; mean over seeds "
        f"{args.seeds}. coverage: share of images acted on; flips: share of those whose flow "
        "class differs from the true label.",
        "",
        "| steps | part | threshold | coverage | flips | flipped images (sum over seeds) |",
        "|---|---|---|---|---|---|",
    ]
    for steps in args.steps:
        for part in ("train", "test"):
            for t in THRESHOLDS:
                sel = [
                    r
                    for r in results
                    if r["steps"] == steps and r["part"] == part and r["threshold"] == t
                ]
                cov = np.mean([r["coverage"] for r in sel])
                flip = np.mean([r["flip_rate"] for r in sel])
                total = sum(r["flips"] for r in sel)
                lines.append(f"| {steps} | {part} | {t} | {cov:.1%} | {flip:.2%} | {total} |")
    (RESULTS / "confidence.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
