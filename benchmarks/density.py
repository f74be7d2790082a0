"""Density benchmark: test bits/dim on scikit-learn's digits at an equal training-time budget.

Run:  python benchmarks/density.py [--budget 120] [--only NAME ...] [--quick]
Needs the bench extra for the peers: pip install -e ".[bench]"

Protocol (the same for every contender):
- digits 8x8, 17 levels; stratified 70/30 train/test split (random_state=0); 15% of train held
  out (stratified, random_state=0) for early stopping;
- uniform dequantization, fresh noise every batch; test bits/dim in discrete terms
  (``-log2 p(x_int) / 64`` with one dequantization sample, fixed seed), including the log-det of
  every preprocessing step;
- neural flows see the same logit preprocessing as flowaug (its log-det is counted), get the
  class as a one-hot context, train with AdamW for the same wall-clock budget on one CPU thread,
  are evaluated on the validation split every ``--eval-every`` steps and keep their best weights;
- the per-class Gaussian mixture chooses its number of components and covariance
  regularization on the validation split, in data space and in logit space (best kept).

Each contender runs in its own subprocess (so peak memory is its own); results go to
benchmarks/results/density.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

RESULTS = Path(__file__).resolve().parent / "results"
LEVELS = 17
ALPHA = 0.05
DIM = 64
CONTENDERS = [
    "flowaug-glow",
    "zuko-maf",
    "zuko-nsf",
    "zuko-realnvp",
    "nflows-maf",
    "normflows-nsf",
    "gmm-per-class",
]


# --- data -------------------------------------------------------------------------------------
def load_splits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.long).unsqueeze(1)
    y = torch.tensor(digits.target)
    idx = np.arange(len(x))
    train, test = train_test_split(idx, test_size=0.3, stratify=digits.target, random_state=0)
    train, val = train_test_split(
        train, test_size=0.15, stratify=digits.target[train], random_state=0
    )
    return {name: (x[i], y[i]) for name, i in [("train", train), ("val", val), ("test", test)]}


def dequantize(x_int: torch.Tensor, generator=None) -> torch.Tensor:
    return (x_int.float() + torch.rand(x_int.shape, generator=generator)) / LEVELS


def to_logit(x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattened logit features [B, 64] and the log-det of x01 -> features, [B]."""
    u = ALPHA + (1 - 2 * ALPHA) * x01.flatten(1)
    v = torch.log(u) - torch.log1p(-u)
    logdet = (math.log(1 - 2 * ALPHA) - torch.log(u) - torch.log1p(-u)).sum(1)
    return v, logdet


def to_bpd(log_prob_x01: torch.Tensor) -> float:
    """Mean discrete bits/dim from log p(x01), x01 = (k + u) / LEVELS."""
    return float(((-log_prob_x01 + DIM * math.log(LEVELS)) / (DIM * math.log(2))).mean())


# --- generic budgeted training of a peer flow --------------------------------------------------
def train_peer(module, log_prob_fn, data, budget, eval_every, lr, batch_size=64, seed=0):
    """AdamW for ``budget`` seconds with validation early stopping; returns stats."""
    x_train, y_train = data["train"]
    x_val, y_val = data["val"]
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=1e-5)
    gen = torch.Generator().manual_seed(seed)
    best = (math.inf, copy.deepcopy(module.state_dict()), 0)
    step, start = 0, time.perf_counter()
    train_time = 0.0
    while time.perf_counter() - start < budget:
        perm = torch.randperm(len(x_train), generator=gen)
        for i in range(0, len(perm), batch_size):
            if time.perf_counter() - start >= budget:
                break
            t0 = time.perf_counter()
            b = perm[i : i + batch_size]
            module.train()
            loss = -log_prob_fn(dequantize(x_train[b], gen), y_train[b]).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 5.0)
            opt.step()
            train_time += time.perf_counter() - t0
            step += 1
            if step % eval_every == 0:
                val = evaluate(module, log_prob_fn, x_val, y_val)
                if val < best[0]:
                    best = (val, copy.deepcopy(module.state_dict()), step)
    module.load_state_dict(best[1])
    return {"steps": step, "best_step": best[2], "val_bpd": best[0],
            "train_steps_per_s": step / (time.perf_counter() - start)}


@torch.no_grad()
def evaluate(module, log_prob_fn, x_int, y) -> float:
    module.eval()
    gen = torch.Generator().manual_seed(1234)
    return to_bpd(torch.cat([log_prob_fn(dequantize(xb, gen), yb)
                             for xb, yb in zip(x_int.split(512), y.split(512), strict=True)]))


def time_sampling(sample_fn, n=1000) -> float:
    y = torch.arange(n) % 10
    with torch.no_grad():
        sample_fn(y[:10])  # warm-up
        t0 = time.perf_counter()
        sample_fn(y)
    return n / (time.perf_counter() - t0)


# --- contenders ----------------------------------------------------------------------------------
def run_flowaug(data, budget, eval_every, seed):
    from flowaug import FlowTrainer, Glow, TrainConfig
    from flowaug.cli import QUICKSTART_MODEL, QUICKSTART_STEPS, QUICKSTART_TRAIN

    # the quickstart's settings, capped by the same wall-clock budget as every peer
    torch.manual_seed(seed)
    model = Glow((1, 8, 8), 10, levels=LEVELS, **QUICKSTART_MODEL)
    config = TrainConfig(**QUICKSTART_TRAIN | dict(max_steps=QUICKSTART_STEPS, max_time=budget,
                                                     seed=seed, progress=False))
    start = time.perf_counter()
    history = FlowTrainer(model, config).fit(data["train"], val=data["val"])
    elapsed = time.perf_counter() - start
    model.eval()
    records = history.records
    steps = max(r["step"] for r in records)
    best = min(records, key=lambda r: r["val_bpd"])
    return model, model.log_prob, lambda y: model.sample(y), {
        "steps": steps, "best_step": best["step"], "val_bpd": best["val_bpd"],
        "train_steps_per_s": steps / elapsed}


def _onehot(y):
    return F.one_hot(y, 10).float()


def run_zuko(kind, data, budget, eval_every, seed):
    import zuko

    torch.manual_seed(seed)
    cls = {"maf": zuko.flows.MAF, "nsf": zuko.flows.NSF, "realnvp": zuko.flows.RealNVP}[kind]
    flow = cls(DIM, context=10, transforms=5, hidden_features=(256, 256))

    def log_prob_fn(x01, y):
        v, logdet = to_logit(x01)
        return flow(_onehot(y)).log_prob(v) + logdet

    def sample_fn(y):
        v = flow(_onehot(y)).sample()
        return torch.sigmoid(v)

    stats = train_peer(flow, log_prob_fn, data, budget, eval_every, lr=1e-3, seed=seed)
    return flow, log_prob_fn, sample_fn, stats


def run_nflows(data, budget, eval_every, seed):
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.transforms import CompositeTransform, ReversePermutation
    from nflows.transforms.autoregressive import MaskedAffineAutoregressiveTransform

    torch.manual_seed(seed)
    layers = []
    for _ in range(5):
        layers += [ReversePermutation(DIM),
                   MaskedAffineAutoregressiveTransform(DIM, 256, context_features=10)]
    flow = Flow(CompositeTransform(layers), StandardNormal([DIM]))

    def log_prob_fn(x01, y):
        v, logdet = to_logit(x01)
        return flow.log_prob(v, context=_onehot(y)) + logdet

    def sample_fn(y):
        return torch.sigmoid(flow.sample(1, context=_onehot(y)).squeeze(1))

    stats = train_peer(flow, log_prob_fn, data, budget, eval_every, lr=1e-3, seed=seed)
    return flow, log_prob_fn, sample_fn, stats


def run_normflows(data, budget, eval_every, seed):
    import normflows as nf

    torch.manual_seed(seed)
    flows = []
    for _ in range(5):
        flows += [nf.flows.AutoregressiveRationalQuadraticSpline(DIM, 2, 128,
                                                                 num_context_channels=10),
                  nf.flows.LULinearPermute(DIM)]
    flow = nf.ConditionalNormalizingFlow(nf.distributions.DiagGaussian(DIM), flows)

    def log_prob_fn(x01, y):
        v, logdet = to_logit(x01)
        return flow.log_prob(v, _onehot(y)) + logdet

    def sample_fn(y):
        return torch.sigmoid(flow.sample(len(y), _onehot(y))[0])

    stats = train_peer(flow, log_prob_fn, data, budget, eval_every, lr=1e-3, seed=seed)
    return flow, log_prob_fn, sample_fn, stats


def run_gmm(data, budget, eval_every, seed):
    from sklearn.mixture import GaussianMixture

    gen = torch.Generator().manual_seed(seed)
    (x_tr, y_tr), (x_val, y_val) = data["train"], data["val"]
    # several dequantization draws of the training set, as the flows see fresh noise each epoch
    x_tr_rep = torch.cat([dequantize(x_tr, gen) for _ in range(5)])
    y_tr_rep = y_tr.repeat(5)
    val01 = dequantize(x_val, torch.Generator().manual_seed(1234))
    best = None
    t0 = time.perf_counter()
    for space in ("data", "logit"):
        feats = (lambda x01: (x01.flatten(1), torch.zeros(len(x01)))) if space == "data" \
            else to_logit
        tr_f, _ = feats(x_tr_rep)
        val_f, val_ld = feats(val01)
        for k in (1, 2, 4, 8):
            for reg in (1e-3, 1e-2, 1e-1):
                models = [GaussianMixture(k, reg_covar=reg, random_state=seed)
                          .fit(tr_f[y_tr_rep == c].double().numpy()) for c in range(10)]
                lp = torch.tensor(np.stack([models[c].score_samples(val_f.double().numpy())
                                            for c in range(10)], 1))
                val = to_bpd(lp.gather(1, y_val[:, None]).squeeze(1) + val_ld.double())
                if best is None or val < best[0]:
                    best = (val, models, space, k, reg)
    _, models, space, k, reg = best
    feats = (lambda x01: (x01.flatten(1), torch.zeros(len(x01)))) if space == "data" else to_logit

    def log_prob_fn(x01, y):
        f, ld = feats(x01)
        lp = np.stack([models[c].score_samples(f.double().numpy()) for c in range(10)], 1)
        return torch.tensor(lp).gather(1, y[:, None]).squeeze(1) + ld.double()

    def sample_fn(y):
        out = []
        for c in range(10):
            n = int((y == c).sum())
            if n:
                out.append(torch.tensor(models[c].sample(n)[0]))
        return torch.cat(out)

    holder = torch.nn.Linear(1, 1)  # evaluate() wants a module to switch to eval mode
    stats = {"steps": None, "val_bpd": best[0], "space": space, "components": k,
             "reg_covar": reg, "fit_seconds": time.perf_counter() - t0}
    params = sum(m._n_parameters() for m in models)
    return holder, log_prob_fn, sample_fn, stats | {"parameters": params}


def run_one(name, budget, eval_every, seed) -> dict:
    torch.set_num_threads(1)
    data = load_splits()
    start = time.perf_counter()
    if name == "flowaug-glow":
        module, log_prob_fn, sample_fn, stats = run_flowaug(data, budget, eval_every, seed)
    elif name.startswith("zuko-"):
        module, log_prob_fn, sample_fn, stats = run_zuko(name[5:], data, budget, eval_every, seed)
    elif name == "nflows-maf":
        module, log_prob_fn, sample_fn, stats = run_nflows(data, budget, eval_every, seed)
    elif name == "normflows-nsf":
        module, log_prob_fn, sample_fn, stats = run_normflows(data, budget, eval_every, seed)
    elif name == "gmm-per-class":
        module, log_prob_fn, sample_fn, stats = run_gmm(data, budget, eval_every, seed)
    else:
        raise ValueError(f"unknown contender {name!r}; choose from {CONTENDERS}")
    wall = time.perf_counter() - start
    x_test, y_test = data["test"]
    result = {
        "name": name,
        "test_bpd": evaluate(module, log_prob_fn, x_test, y_test),
        "wall_seconds": wall,
        "sampling_samples_per_s": time_sampling(sample_fn),
        "parameters": stats.pop("parameters", None)
        or sum(p.numel() for p in module.parameters()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    return result | stats


def write_tables(results: list[dict], args) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", "benchmarks/density.py", *sys.argv[1:]])
    payload = {"command": command,
               "budget_seconds": args.budget, "threads": 1, "results": results}
    (RESULTS / "density.json").write_text(json.dumps(payload, indent=2))
    rows = sorted(results, key=lambda r: r["test_bpd"])
    lines = [
        "# Density on digits (8x8, 17 levels): test bits/dim at an equal budget",
        "",
        f"Commands: {', '.join(sorted({'`' + r.get('command', command) + '`' for r in rows}))}"
        f" (one CPU thread, {args.budget:.0f} s of training per contender, validation early "
        "stopping, discrete bits/dim; each contender in its own process, one after another).",
        "",
        "| contender | test bits/dim | val bits/dim | steps | train steps/s | samples/s "
        "| parameters | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        steps_per_s = r.get("train_steps_per_s")
        lines.append(
            f"| {r['name']} | {r['test_bpd']:.3f} | {r['val_bpd']:.3f} | {r.get('steps') or '-'} "
            f"| {f'{steps_per_s:.1f}' if steps_per_s else '-'} "
            f"| {r['sampling_samples_per_s']:.0f} | {r['parameters']:,} "
            f"| {r['peak_rss_mb']:.0f} |"
        )
    (RESULTS / "density.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=120.0, help="training seconds each")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, help=f"subset of {CONTENDERS}")
    parser.add_argument("--quick", action="store_true", help="10 s budget smoke run")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.budget, args.eval_every = 10.0, 20
    if args.child:
        print(json.dumps(run_one(args.child, args.budget, args.eval_every, args.seed)))
        return
    results = []
    for name in args.only or CONTENDERS:
        cmd = [sys.executable, __file__, "--child", name, "--budget", str(args.budget),
               "--eval-every", str(args.eval_every), "--seed", str(args.seed)]
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(f"{name} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        results[-1]["command"] = " ".join(["python", "benchmarks/density.py", *sys.argv[1:]])
        print(f"{name}: {results[-1]['test_bpd']:.3f} bits/dim", flush=True)
    if args.only and (RESULTS / "density.json").exists():
        # a partial re-run replaces its own rows and keeps the others from the last full run
        previous = json.loads((RESULTS / "density.json").read_text())["results"]
        fresh = {r["name"] for r in results}
        results = [r for r in previous if r["name"] not in fresh] + results
    write_tables(results, args)


if __name__ == "__main__":
    main()
