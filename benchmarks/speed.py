"""Speed benchmark: training and sampling throughput of the default Glow, against the machine.

Run:  python benchmarks/speed.py [--repeats 5] [--threads 1 2] [--quick]

Protocol:
- the machine's float32 matmul peak is measured in the same run (median GFLOP/s of a
  2048x2048 ``torch.mm``, per thread count): a step's achieved GFLOP/s as a share of it is the
  distance to the limit;
- the default model of ``flowaug.fit`` (``flowaug.training.build_model``) for 240 images at
  8x8x1 (17 levels), 28x28x1 and 32x32x3 (256 levels), at the default batch size
  (``default_config(240, event_shape=shape)``: 30 at 8x8, 16 above 16 pixels); a training
  step is forward, backward and the trainer's update (AdamW, fused kernel), in train mode
  after ActNorm initialization;
  its FLOPs are counted once with ``torch.utils.flop_counter.FlopCounterMode``; sampling
  draws 256 images (``model.sample`` in eval mode, no autograd), whose FLOPs are counted the
  same way;
- median over ``--repeats`` timed repeats after one warm-up, all configurations of one thread
  count measured one after the other in the same process (``torch.set_num_threads``).

Writes benchmarks/results/speed.{json,md}.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from report import write_report  # noqa: E402

from flowaug.data import as_flow_data  # noqa: E402
from flowaug.training import build_model, default_config  # noqa: E402

SIZES = [((1, 8, 8), 17), ((1, 28, 28), 256), ((3, 32, 32), 256)]
NUM_IMAGES, NUM_CLASSES, SAMPLE_BATCH = 240, 4, 256


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_peak(repeats: int, n: int = 2048) -> float:
    """Median float32 GFLOP/s of an ``n x n`` matrix product."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / _median_seconds(lambda: torch.mm(a, b), repeats) / 1e9


def measure(shape: tuple[int, int, int], levels: int, repeats: int, peak: float) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, levels, (NUM_IMAGES, *shape), generator=g)
    y = torch.arange(NUM_IMAGES) % NUM_CLASSES
    data = as_flow_data((x, y), levels=levels)
    torch.manual_seed(0)
    model = build_model(data)
    batch = default_config(NUM_IMAGES, event_shape=shape).batch_size
    xb, yb = model.prepare_batch(x[:batch], g), y[:batch]
    model.initialize(xb, yb)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # as FlowTrainer

    def step() -> None:
        loss = -model.log_prob(xb, yb).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    labels = torch.arange(SAMPLE_BATCH) % NUM_CLASSES

    def sample() -> None:
        with torch.no_grad():
            model.sample(labels, temperature=0.8)

    step_flops = _flops(step)
    step_s = _median_seconds(step, repeats)
    model.eval()
    sample_flops = _flops(sample)
    sample_s = _median_seconds(sample, repeats)
    return {
        "shape": list(shape),
        "levels": levels,
        "params": sum(p.numel() for p in model.parameters()),
        "depth": model.config["depth"],
        "hidden": model.config["hidden"],
        "batch": batch,
        "train_step_s": step_s,
        "train_images_per_s": batch / step_s,
        "train_gflops_per_s": step_flops / step_s / 1e9,
        "train_share_of_peak": step_flops / step_s / 1e9 / peak,
        "sample_images_per_s": SAMPLE_BATCH / sample_s,
        "sample_gflops_per_s": sample_flops / sample_s / 1e9,
        "sample_share_of_peak": sample_flops / sample_s / 1e9 / peak,
    }


def markdown(report: dict) -> str:
    lines = [
        "# Speed of the default Glow",
        "",
        f"Command: `{report['command']}`; torch {report['torch']}, {report['machine']}.",
        "Medians over the repeats; peak = float32 `torch.mm` 2048x2048 in the same run.",
        "",
        "| threads | image | params | batch | train img/s | train GFLOP/s (share of peak) | "
        "sample img/s | sample GFLOP/s (share) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in report["runs"]:
        for r in run["models"]:
            lines.append(
                f"| {run['threads']} | {'x'.join(map(str, r['shape']))} | "
                f"{r['params'] / 1e6:.2f}M | {r['batch']} | {r['train_images_per_s']:.0f} | "
                f"{r['train_gflops_per_s']:.1f} ({100 * r['train_share_of_peak']:.0f}%) | "
                f"{r['sample_images_per_s']:.0f} | {r['sample_gflops_per_s']:.1f} "
                f"({100 * r['sample_share_of_peak']:.0f}%) |"
            )
    lines += ["", "| threads | float32 matmul peak GFLOP/s |", "|---|---|"]
    lines += [f"| {run['threads']} | {run['peak_gflops']:.1f} |" for run in report["runs"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()])
    parser.add_argument("--quick", action="store_true", help="8x8 only, 2 repeats (a smoke run)")
    args = parser.parse_args(argv)
    sizes = SIZES[:1] if args.quick else SIZES
    repeats = 2 if args.quick else args.repeats
    runs = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        peak = matmul_peak(repeats)
        models = [measure(shape, levels, repeats, peak) for shape, levels in sizes]
        runs.append({"threads": threads, "peak_gflops": peak, "models": models})
        print(f"{threads} thread(s): peak {peak:.1f} GFLOP/s", flush=True)
        for r in models:
            print(
                f"  {r['shape']}: train {r['train_images_per_s']:.0f} img/s "
                f"({100 * r['train_share_of_peak']:.0f}% of peak), sample "
                f"{r['sample_images_per_s']:.0f} img/s ({100 * r['sample_share_of_peak']:.0f}%)",
                flush=True,
            )
    report = {
        "command": "python benchmarks/speed.py " + " ".join(argv or sys.argv[1:]),
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads available",
        "runs": runs,
    }
    if not args.quick:
        write_report("speed", report, markdown)


if __name__ == "__main__":
    main()
