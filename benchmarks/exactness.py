"""Exactness check: inverse error and log-det error of whole Glow models, 8x8x1 and 32x32x3.

Run:  python benchmarks/exactness.py [--depth 2] [--hidden 16]

For each image shape and coupling (affine, spline), a class-conditional Glow with random
(non-identity) weights and data-initialized ActNorm:
- inverse error: ``max |decode(encode(x)) - x|`` over a batch, in float32 and float64;
- log-det error: ``|log_prob(x) - (log N(encode(x)) + log|det J|)|`` with ``J`` the full
  Jacobian of ``encode`` from ``torch.autograd.functional.jacobian`` (float64, one image; at
  32x32x3 that is a 3072 x 3072 matrix).

Results: benchmarks/results/exactness.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch.autograd.functional import jacobian

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowaug import Glow  # noqa: E402
from flowaug.flows.layers import CouplingNet, GaussianPrior  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SHAPES = [(1, 8, 8), (3, 32, 32)]


def random_glow(shape, coupling: str, depth: int, hidden: int, dtype) -> Glow:
    """A Glow whose zero-initialized layers get random weights (else it starts as identity)."""
    torch.manual_seed(0)
    model = Glow(shape, 10, depth=depth, hidden=hidden, coupling=coupling).to(dtype)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, CouplingNet):
                m.out.weight.normal_(0, 0.05)
                m.out.bias.normal_(0, 0.05)
            if isinstance(m, GaussianPrior):
                m.base.normal_(0, 0.05)
    model.initialize(torch.rand(32, *shape, dtype=dtype), torch.arange(32) % 10)
    return model.eval()


def inverse_error(shape, coupling, depth, hidden, dtype) -> float:
    model = random_glow(shape, coupling, depth, hidden, dtype)
    x = torch.rand(16, *shape, dtype=dtype) * 0.98 + 0.01
    y = torch.arange(16) % 10
    with torch.no_grad():
        return float((model.decode(model.encode(x, y), y) - x).abs().max())


def logdet_error(shape, coupling, depth, hidden) -> float:
    model = random_glow(shape, coupling, depth, hidden, torch.float64)
    x = torch.rand(1, *shape, dtype=torch.float64) * 0.98 + 0.01
    y = torch.tensor([3])

    def encode(flat):
        return model.encode(flat.view(1, *shape), y).flatten()

    jac = jacobian(encode, x.flatten(), vectorize=True)
    with torch.no_grad():
        eps = encode(x.flatten())
        expected = -0.5 * (eps.pow(2).sum() + eps.numel() * math.log(2 * math.pi))
        expected = expected + torch.linalg.slogdet(jac)[1]
        return float((model.log_prob(x, y)[0] - expected).abs())


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=2, help="flow steps per scale")
    parser.add_argument("--hidden", type=int, default=16, help="coupling network width")
    args = parser.parse_args(argv)
    rows = []
    for shape in SHAPES:
        for coupling in ("affine", "spline"):
            start = time.perf_counter()
            row = {
                "shape": list(shape),
                "coupling": coupling,
                "inverse_error_float32": inverse_error(
                    shape, coupling, args.depth, args.hidden, torch.float32
                ),
                "inverse_error_float64": inverse_error(
                    shape, coupling, args.depth, args.hidden, torch.float64
                ),
                "logdet_error_float64": logdet_error(shape, coupling, args.depth, args.hidden),
            }
            row["seconds"] = time.perf_counter() - start
            print(row, flush=True)
            rows.append(row)
    command = " ".join(["python", "benchmarks/exactness.py", *(argv or sys.argv[1:])])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "exactness.json").write_text(
        json.dumps({"command": command, "depth": args.depth, "hidden": args.hidden,
                    "results": rows}, indent=2)
    )
    lines = [
        "# Exactness of whole Glow models",
        "",
        f"Command: `{command}` (class-conditional Glow, depth {args.depth} per scale, hidden "
        f"{args.hidden}, random non-identity weights; log-det against the full autograd "
        "Jacobian of `encode`, float64, one image).",
        "",
        "| shape | coupling | max inverse error f32 | max inverse error f64 | log-det error f64 |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {'x'.join(map(str, r['shape']))} | {r['coupling']} "
            f"| {r['inverse_error_float32']:.1e} | {r['inverse_error_float64']:.1e} "
            f"| {r['logdet_error_float64']:.1e} |"
        )
    (RESULTS / "exactness.md").write_text("\n".join(lines) + "\n")
    return rows


if __name__ == "__main__":
    main()
