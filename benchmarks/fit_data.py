"""The image folders of the fit-time benchmark, made offline and seeded.

- ``shapes``: 240 RGB 32x32 PNGs, four classes (circle, square, triangle, cross) of 60, each a
  shape of random size, position and colour on a noisy background of random colour: what a user
  brings from their own camera or screenshots, at the size scarce-data image work happens.
- ``digits28``: scikit-learn's bundled digits (1,797 8x8 images at 17 levels) resized to 28x28
  grayscale 8-bit PNGs (bilinear), the size of MNIST-style data.

Run:  python benchmarks/fit_data.py OUT_DIR  (writes OUT_DIR/shapes and OUT_DIR/digits28)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw

SHAPES = ("circle", "square", "triangle", "cross")


def _shape_image(kind: str, rng: np.random.Generator, size: int = 32) -> PIL.Image.Image:
    background = rng.integers(0, 256, 3)
    noise = rng.normal(0, 18, (size, size, 3))
    pixels = np.clip(background + noise, 0, 255).astype(np.uint8)
    image = PIL.Image.fromarray(pixels, "RGB")
    draw = PIL.ImageDraw.Draw(image)
    radius = int(rng.integers(5, 13))
    cx, cy = (int(v) for v in rng.integers(radius, size - radius, 2))
    colour = tuple(int(v) for v in (background + rng.integers(80, 176, 3)) % 256)
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if kind == "circle":
        draw.ellipse(box, fill=colour)
    elif kind == "square":
        draw.rectangle(box, fill=colour)
    elif kind == "triangle":
        draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)],
                     fill=colour)
    else:
        bar = max(2, radius // 3)
        draw.rectangle((cx - radius, cy - bar, cx + radius, cy + bar), fill=colour)
        draw.rectangle((cx - bar, cy - radius, cx + bar, cy + radius), fill=colour)
    return image


def make_shapes_folder(root: Path, per_class: int = 60, seed: int = 0) -> Path:
    """``root/<shape>/<i>.png``: ``per_class`` 32x32 RGB images of each of :data:`SHAPES`."""
    rng = np.random.default_rng(seed)
    for kind in SHAPES:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            _shape_image(kind, rng).save(root / kind / f"{i:03d}.png")
    return root


def make_digits28_folder(root: Path) -> Path:
    """``root/<digit>/<i>.png``: scikit-learn's digits, 28x28 grayscale, 8-bit."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        small = PIL.Image.fromarray((image * 255 / 16).round().astype(np.uint8), "L")
        small.resize((28, 28), PIL.Image.BILINEAR).save(root / str(label) / f"{i:04d}.png")
    return root


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "fit-data")
    print(make_shapes_folder(out / "shapes"), make_digits28_folder(out / "digits28"))
