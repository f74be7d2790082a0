"""Design experiments behind benchmarks/utility.py's flow settings (dev data only, never test).

Run:  python benchmarks/dev/latent_variants.py                       # every variant, k=5
      python benchmarks/dev/latent_variants.py --arms classical c+coarse.5 --seeds 100 101
      python benchmarks/dev/latent_variants.py --bpd                 # the flow-fit sweep

Each labelled set is drawn with a dev seed (100, 101, ...), the CNN is scored on the pool images
nobody labelled (``utility.py --dev``'s protocol), and every arm uses utility.py's own CNN,
batches and flow. The variants are the ones the stop-8 closing note reports: latent variations
of all scales, of the coarsest only (``coarse_scales=1``), of the finest only, cross-class
"style transfer" of latents, resampling with a per-scale temperature, a per-class Gaussian, and
(stop 9) within-class interpolation of two labelled images' latents with a pixel-space
counterpart; each alone and before RandomAffine. ``--bpd`` fits flows with other budgets and
reports dev bits/dim.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import utility as U  # noqa: E402

from flowaug import Glow  # noqa: E402
from flowaug.pixels import image_to_model, model_to_image  # noqa: E402


@torch.no_grad()
def fine_only(flow: Glow, x01: Tensor, y: Tensor, p: float, strength: float, seed: int):
    """Latent variation of the finest scale only (the complement of ``coarse_scales``)."""
    eps = flow.encode(image_to_model(x01, U.LEVELS), y)
    fine = flow.latent_scale_sizes[0]
    gen = torch.Generator().manual_seed(seed + 9)

    def make() -> Tensor:
        moved = eps.clone()
        noise = torch.randn(eps[:, :fine].shape, generator=gen)
        moved[:, :fine] = (1 - strength**2) ** 0.5 * eps[:, :fine] + strength * 0.7 * noise
        return model_to_image(flow.decode(moved, y), U.LEVELS)

    return U.swap_in_variations(make, p, 10, seed)


@torch.no_grad()
def style_transfer(flow: Glow, x01: Tensor, y: Tensor, p: float, seed: int):
    """Decode another labelled image's latent under this image's label."""
    eps = flow.encode(image_to_model(x01, U.LEVELS), y)
    gen = torch.Generator().manual_seed(seed + 7)

    def make() -> Tensor:
        source = torch.randint(len(y), (len(y),), generator=gen)
        return model_to_image(flow.decode(eps[source], y), U.LEVELS)

    return U.swap_in_variations(make, p, 10, seed)


@torch.no_grad()
def per_scale_resample(flow: Glow, p: float, t_fine: float, t_coarse: float, seed: int):
    """Resample with one temperature for the finest scale and another for the rest."""
    gen = torch.Generator().manual_seed(seed + 11)
    per_class = 52
    labels = torch.arange(U.NUM_CLASSES).repeat_interleave(per_class)
    eps = torch.randn(len(labels), flow.event_dim, generator=gen)
    fine = flow.latent_scale_sizes[0]
    eps[:, :fine] *= t_fine
    eps[:, fine:] *= t_coarse
    bank = model_to_image(flow.decode(eps, labels), U.LEVELS)

    def augment(images: Tensor, batch_labels: Tensor, index: Tensor, step: int) -> Tensor:
        mask = torch.rand(len(batch_labels), generator=gen) < p
        out = images.clone()
        pick = torch.randint(per_class, (int(mask.sum()),), generator=gen)
        out[mask] = bank[batch_labels[mask] * per_class + pick]
        return out

    return augment


def same_class_partners(y: Tensor, gen: torch.Generator) -> Tensor:
    """For every labelled image, the index of a random labelled image of its class (itself
    included)."""
    partner = torch.empty(len(y), dtype=torch.long)
    for c in y.unique():
        members = torch.nonzero(y == c).flatten()
        partner[members] = members[torch.randint(len(members), (len(members),), generator=gen)]
    return partner


@torch.no_grad()
def latent_interpolation(flow: Glow, x01: Tensor, y: Tensor, p: float, keep_norm: bool, seed: int):
    """Decode ``(1 - a) eps_i + a eps_j`` for a same-class partner ``j``, ``a ~ U(0, 1)``;
    ``keep_norm`` divides by ``sqrt((1 - a)^2 + a^2)`` so the mix keeps the prior's scale."""
    eps = flow.encode(image_to_model(x01, U.LEVELS), y)
    gen = torch.Generator().manual_seed(seed + 13)

    def make() -> Tensor:
        a = torch.rand(len(y), 1, generator=gen)
        mixed = (1 - a) * eps + a * eps[same_class_partners(y, gen)]
        if keep_norm:
            mixed = mixed / torch.sqrt((1 - a) ** 2 + a**2)
        return model_to_image(flow.decode(mixed, y), U.LEVELS)

    return U.swap_in_variations(make, p, 10, seed)


def pixel_interpolation(x01: Tensor, y: Tensor, p: float, seed: int):
    """The pixel-space counterpart: ``(1 - a) x_i + a x_j`` for a same-class partner ``j``."""
    gen = torch.Generator().manual_seed(seed + 13)

    def make() -> Tensor:
        a = torch.rand(len(y), 1, 1, 1, generator=gen)
        return (1 - a) * x01 + a * x01[same_class_partners(y, gen)]

    return U.swap_in_variations(make, p, 10, seed)


def latent(cfg: dict[str, Any]) -> Callable:
    return lambda m, x01, y, s, seed: U.flow_latent(m.flow, x01, y, cfg, 10, seed)


C = U.classical
ALONE: dict[str, Callable] = {
    "real": lambda m, x01, y, s, seed: None,
    "classical": lambda m, x01, y, s, seed: C,
    "gmm.25": lambda m, x01, y, s, seed: U.replace_with_pool(m.gmm, 0.25, seed),
    "lat": latent({"p": 0.25, "strength": 0.5, "temperature": 0.7}),
    "lat.4": latent({"p": 0.5, "strength": 0.4, "temperature": 1.0}),
    "coarse.5": latent({"p": 0.5, "strength": 0.5, "temperature": 1.0, "coarse_scales": 1}),
    "coarse.8": latent({"p": 0.5, "strength": 0.8, "temperature": 1.0, "coarse_scales": 1}),
    "coarse.8p75": latent({"p": 0.75, "strength": 0.8, "temperature": 1.0, "coarse_scales": 1}),
    "coarse1": latent({"p": 0.5, "strength": 1.0, "temperature": 1.0, "coarse_scales": 1}),
    "fine1": lambda m, x01, y, s, seed: fine_only(m.flow, x01, y, 0.5, 1.0, seed),
    "style.5": lambda m, x01, y, s, seed: style_transfer(m.flow, x01, y, 0.5, seed),
    "res.25": lambda m, x01, y, s, seed: U.flow_resample(
        m.flow, {"p": 0.25, "temperature": 0.5}, seed
    ),
    "sres.2.8": lambda m, x01, y, s, seed: per_scale_resample(m.flow, 0.25, 0.2, 0.8, seed),
    "int.5": lambda m, x01, y, s, seed: latent_interpolation(m.flow, x01, y, 0.5, False, seed),
    "intn.5": lambda m, x01, y, s, seed: latent_interpolation(m.flow, x01, y, 0.5, True, seed),
    "int.75": lambda m, x01, y, s, seed: latent_interpolation(m.flow, x01, y, 0.75, False, seed),
    "pix.5": lambda m, x01, y, s, seed: pixel_interpolation(x01, y, 0.5, seed),
}
ARMS = dict(ALONE)
for _name, _make in ALONE.items():
    if _name not in ("real", "classical"):
        ARMS["c+" + _name] = (
            lambda make: lambda m, x01, y, s, seed: U.chain(make(m, x01, y, s, seed), C)
        )(_make)


def settings(steps: int, flow_steps: int, flow_copies: int) -> U.Settings:
    return U.Settings(
        ks=[5], seeds=1, tune_seeds=0, steps=steps, batch_size=32, flow_steps=flow_steps,
        flow_copies=flow_copies, latent_refresh=10, tune=False, long_tail=False, dev=True,
    )  # fmt: skip


def run_seed(job: tuple[int, int, list[str], U.Settings]) -> dict[str, float]:
    seed, k, arms, s = job
    torch.set_num_threads(1)
    x, y, pool, _ = U.load_split()
    labelled = U.draw_labelled(y.numpy(), pool, {c: k for c in range(U.NUM_CLASSES)}, seed)
    unused = np.setdiff1d(pool, labelled)
    x01, y_lab = x[labelled].float() / (U.LEVELS - 1), y[labelled]
    models = U.Models(x[labelled], y_lab, s, seed)
    out = {}
    for name in arms:
        net = U.train_cnn(x01, y_lab, ARMS[name](models, x01, y_lab, s, seed), s, seed)
        out[name] = U.accuracy(net, x[unused].float() / (U.LEVELS - 1), y[unused])
    print(f"seed {seed}: " + ", ".join(f"{a} {100 * v:.1f}" for a, v in out.items()), flush=True)
    return out


def fit_bpd(job: tuple[str, dict[str, Any], int]) -> float:
    """Dev bits/dim of utility.py's flow fitted with the budget and architecture in ``kw``."""
    _, kw, seed = job
    torch.set_num_threads(1)
    x, y, pool, _ = U.load_split()
    labelled = U.draw_labelled(y.numpy(), pool, {c: 5 for c in range(U.NUM_CLASSES)}, seed)
    unused = np.setdiff1d(pool, labelled)[:600]
    architecture = {key: kw[key] for key in ("depth", "hidden", "dropout") if key in kw}
    s = settings(steps=0, flow_steps=kw["steps"], flow_copies=kw["copies"])
    flow = U.fit_flow(x[labelled], y[labelled], s, seed, **architecture)
    with torch.no_grad():
        return float(flow.bits_per_dim(x[unused], y[unused]).mean())


BUDGETS = {
    "200 steps, 20 copies": {"steps": 200, "copies": 20},
    "600 steps, 20 copies": {"steps": 600, "copies": 20},
    "hidden 64": {"steps": 200, "copies": 20, "hidden": 64},
    "dropout 0.3": {"steps": 200, "copies": 20, "dropout": 0.3},
    "depth 8": {"steps": 200, "copies": 20, "depth": 8},
    "600 steps, 50 copies": {"steps": 600, "copies": 50},
    "1500 steps, 100 copies": {"steps": 1500, "copies": 100},
    "600 steps, 50 copies, depth 8, hidden 64": {
        "steps": 600, "copies": 50, "depth": 8, "hidden": 64,
    },
}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102, 103])
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1500, help="CNN steps")
    parser.add_argument("--flow-steps", type=int, default=600)
    parser.add_argument("--flow-copies", type=int, default=50)
    parser.add_argument("--bpd", action="store_true", help="the flow-fit sweep instead")
    args = parser.parse_args(argv)
    if any(seed < U.DEV_SEED for seed in args.seeds):
        parser.error(f"dev seeds start at {U.DEV_SEED}: lower ones are the benchmark's own draws")
    with get_context("spawn").Pool(2) as workers:
        if args.bpd:
            jobs = [(n, kw, seed) for n, kw in BUDGETS.items() for seed in args.seeds[:2]]
            bpd = workers.map(fit_bpd, jobs)
            for name in BUDGETS:
                got = [b for (n, _, _), b in zip(jobs, bpd, strict=True) if n == name]
                each = " ".join(f"{b:.3f}" for b in got)
                print(f"{name:42s} dev bits/dim {np.mean(got):.3f}  ({each})")
            return
        s = settings(args.steps, args.flow_steps, args.flow_copies)
        results = workers.map(run_seed, [(seed, args.k, args.arms, s) for seed in args.seeds])
    print(f"\nk={args.k}, dev seeds {args.seeds}, accuracy % on the unused pool images:")
    for arm in args.arms:
        values = [100 * r[arm] for r in results]
        print(f"{arm:14s} {np.mean(values):5.1f}   " + " ".join(f"{v:.1f}" for v in values))


if __name__ == "__main__":
    main()
