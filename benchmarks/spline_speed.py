"""Spline coupling speed: flowaug's kernel path against the plain-torch baseline, same run.

Run:  python benchmarks/spline_speed.py [--repeats 7]

The baseline is the straightforward implementation: spline parameters used as a strided view
and ``torch.softmax`` over the few bins. flowaug makes the parameters contiguous and computes
the softmax by hand (torch's CPU kernel is slow for a last dim of 8). Both run on the
quickstart's Glow (depth 8, hidden 64, spline couplings, 8x8 digits), one thread, interleaved;
medians over ``--repeats``: sampling 1,000 images and one training step (batch 64, forward and
backward). Writes benchmarks/results/spline_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flowaug.flows.spline as spline  # noqa: E402
from flowaug import Glow  # noqa: E402
from flowaug.cli import QUICKSTART_MODEL  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _baseline_spline(self, x_a, x_b, cond, inverse):
    params = self.net(x_a, cond)
    params = params.view(x_b.shape[0], self.transformed, 3 * self.bins - 1, *x_b.shape[2:])
    params = params.movedim(2, -1)  # a strided view
    k = self.bins
    widths, heights, slopes = params[..., :k], params[..., k : 2 * k], params[..., 2 * k :]
    return spline.rational_quadratic_spline(x_b, widths, heights, slopes, self.bound, inverse)


@contextmanager
def baseline():
    """Swap in the plain-torch path for the duration of the block."""
    saved = spline._softmax_last, spline.SplineCouplingBase._spline
    spline._softmax_last = lambda raw: torch.softmax(raw, dim=-1)
    spline.SplineCouplingBase._spline = _baseline_spline
    try:
        yield
    finally:
        spline._softmax_last, spline.SplineCouplingBase._spline = saved


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = Glow((1, 8, 8), 10, levels=17, **QUICKSTART_MODEL)
    x, y = torch.rand(64, 1, 8, 8), torch.arange(64) % 10
    model.initialize(x, y)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    labels = torch.arange(1000) % 10

    def sample():
        with torch.no_grad():
            model.eval().sample(labels)

    def step():
        model.train()
        loss = -model.log_prob(x, y).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    times: dict[str, dict[str, list[float]]] = {
        arm: {"sample": [], "step": []} for arm in ("baseline", "flowaug")
    }
    for _ in range(args.repeats + 1):  # the first round warms up and is dropped
        for arm in ("baseline", "flowaug"):
            for name, fn in (("sample", sample), ("step", step)):
                if arm == "baseline":
                    with baseline():
                        start = time.perf_counter()
                        fn()
                else:
                    start = time.perf_counter()
                    fn()
                times[arm][name].append(time.perf_counter() - start)
    median = {a: {n: statistics.median(v[1:]) for n, v in t.items()} for a, t in times.items()}
    report = {
        "command": " ".join(["python", "benchmarks/spline_speed.py", *(argv or sys.argv[1:])]),
        "median_seconds": median,
        "samples_per_s": {a: 1000 / m["sample"] for a, m in median.items()},
        "steps_per_s": {a: 1 / m["step"] for a, m in median.items()},
    }
    report["speedup"] = {
        "sampling": median["baseline"]["sample"] / median["flowaug"]["sample"],
        "training_step": median["baseline"]["step"] / median["flowaug"]["step"],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "spline_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Spline coupling speed (quickstart Glow, one thread, same run)",
        "",
        f"Command: `{report['command']}` (medians of {args.repeats} interleaved repeats).",
        "",
        "| path | samples/s (1,000 images) | training steps/s (batch 64) |",
        "|---|---|---|",
    ]
    for arm in ("baseline", "flowaug"):
        lines.append(
            f"| {arm} | {report['samples_per_s'][arm]:,.0f} | {report['steps_per_s'][arm]:.1f} |"
        )
    lines += [
        "",
        f"Speed-up: sampling {report['speedup']['sampling']:.2f}x, training step "
        f"{report['speedup']['training_step']:.2f}x.",
    ]
    (RESULTS / "spline_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
