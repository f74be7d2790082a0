"""What keeping freed memory in the process (``flowaug.allocator``, on at ``import flowaug``)
does to sampling and training speed, and to peak memory.

Run:  python benchmarks/allocator.py [--rounds 3] [--threads 1]

Protocol:
- each measurement is a fresh process (``FLOWAUG_KEEP_FREED_MEMORY=1`` or ``0``, so glibc's
  malloc starts from its defaults), with ``--threads`` torch threads; the two settings are run
  alternately, ``--rounds`` times each, and the median over the processes is reported along
  with the ratio on/off;
- in each process, after one warm-up call, the median of 5 timed calls of:
  - sampling 1,000 8x8 images (``model.sample`` under ``torch.inference_mode``) from the
    default Glow of ``flowaug fit`` for 8x8 digits (``build_model``: affine, depth 8, hidden 64)
    and from the quickstart's Glow (spline couplings: the model of ``benchmarks/density.py``);
  - sampling 64 images and one training step (forward, backward, Adam) at the default batch
    size, of the default Glow for 240 RGB 32x32 images;
  the weights are the data-initialized ones with small random perturbations of every parameter
  (a trained model's speed; a fresh model's zero-initialized layers could take shortcuts);
- peak RSS of the process (``ru_maxrss``).

Writes benchmarks/results/allocator.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from report import write_report

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent

_CHILD = r"""
import json, resource, sys
import torch
torch.set_num_threads(int(sys.argv[1]))
import flowaug
from flowaug.cli import QUICKSTART_MODEL
from flowaug.data import as_flow_data
from flowaug.training import build_model, default_config


sys.path.insert(0, sys.argv[2])
from speed import _median_seconds


def median_seconds(fn):
    return _median_seconds(fn, 5)


def ready(model, x, y):
    torch.manual_seed(1)
    model.initialize(model.prepare_batch(x), y)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model.eval()


def data(shape, levels, n=240, classes=4):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, levels, (n, *shape), generator=g)
    return as_flow_data((x, torch.arange(n) % classes), levels=levels)


def sampling(model, n, classes):
    labels = torch.arange(n) % classes
    def run():
        with torch.inference_mode():
            model.sample(labels)
    return n / median_seconds(run)


out = {}
digits = data((1, 8, 8), 17, classes=10)
torch.manual_seed(0)
out["8x8 default, sample 1000"] = sampling(ready(build_model(digits), digits.x, digits.y), 1000, 10)
torch.manual_seed(0)
quick = flowaug.Glow((1, 8, 8), 10, levels=17, **QUICKSTART_MODEL)
out["8x8 quickstart (spline), sample 1000"] = sampling(ready(quick, digits.x, digits.y), 1000, 10)
rgb = data((3, 32, 32), 256)
torch.manual_seed(0)
model = ready(build_model(rgb), rgb.x, rgb.y)
out["32x32x3 default, sample 64"] = sampling(model, 64, 4)
batch = default_config(len(rgb)).batch_size
xb, yb = model.prepare_batch(rgb.x[:batch]), rgb.y[:batch]
optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
model.train()
def step():
    loss = -model.log_prob(xb, yb).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
out[f"32x32x3 default, train (batch {batch})"] = batch / median_seconds(step)
out["peak RSS (MB)"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def run_child(keep: bool, threads: int) -> dict:
    env = {**os.environ, "FLOWAUG_KEEP_FREED_MEMORY": "1" if keep else "0",
           "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"):
        env.pop(name, None)
    command = [sys.executable, "-c", _CHILD, str(threads), str(RESULTS.parent)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def markdown(report: dict) -> str:
    lines = [
        "# Keeping freed memory in the process (`flowaug.allocator`)",
        "",
        f"Command: `{report['command']}`; torch {report['torch']}, {report['machine']}, "
        f"{report['threads']} thread(s); medians over {report['rounds']} processes per setting, "
        "run alternately. Images/s unless stated.",
        "",
        "| measurement | malloc as is (`FLOWAUG_KEEP_FREED_MEMORY=0`) | kept (default) | ratio |",
        "|---|---|---|---|",
    ]
    for name, row in report["medians"].items():
        ratio = row["on"] / row["off"]
        lines.append(f"| {name} | {row['off']:.1f} | {row['on']:.1f} | {ratio:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    runs: dict[str, list[dict]] = {"on": [], "off": []}
    for round_ in range(args.rounds):
        for setting in ("off", "on"):
            runs[setting].append(run_child(setting == "on", args.threads))
            print(round_, setting, runs[setting][-1], flush=True)
    medians = {
        name: {s: statistics.median(r[name] for r in runs[s]) for s in runs}
        for name in runs["on"][0]
    }
    report = {
        "command": "python benchmarks/allocator.py " + " ".join(argv or sys.argv[1:]),
        "torch": __import__("torch").__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "threads": args.threads,
        "rounds": args.rounds,
        "medians": medians,
        "runs": runs,
    }
    write_report("allocator", report, markdown)


if __name__ == "__main__":
    main()
