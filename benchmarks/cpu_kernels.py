"""CPU kernels of the coupling networks: flowaug's layers against torch's at the shapes of the
default Glows' training steps (batch 16) and of sampling and validation (large batches).

Run:  python benchmarks/cpu_kernels.py [--repeats 40] [--threads 1 2]

For every case the median time (us) of the forward pass (no gradient) and of forward +
backward, torch's layer and flowaug's, one after the other in one process per thread count
(``torch.set_num_threads``), with the ratio. Cases:
- ``PointwiseConv`` (``channel_mix``) against ``nn.Conv2d`` with a 1x1 kernel (the coupling
  networks' middle layer, 64 -> 64; the LU 1x1 convolution, C -> C without bias);
- ``NarrowConv`` against ``nn.Conv2d`` 3x3 (the coupling networks' last layer, 64 -> 2 C');
- ``Dropout`` against ``nn.Dropout`` (p = 0.2).

Writes benchmarks/results/cpu_kernels.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

from report import write_report

# (name, batch, in channels, out channels, height, width, bias)
POINTWISE = [
    ("28x28 step: coupling 64->64 at 14x14", 16, 64, 64, 14, 14, True),
    ("28x28 step: coupling 64->64 at 7x7", 16, 64, 64, 7, 7, True),
    ("32x32 step: coupling 64->64 at 16x16", 16, 64, 64, 16, 16, True),
    ("28x28 step: LU 4->4 at 14x14", 16, 4, 4, 14, 14, False),
    ("validation: coupling 64->64 at 14x14, batch 512", 512, 64, 64, 14, 14, True),
    ("8x8 sampling: coupling 64->64 at 4x4, batch 256", 256, 64, 64, 4, 4, True),
    ("8x8 sampling: coupling 64->64 at 2x2, batch 256 (oneDNN kept)", 256, 64, 64, 2, 2, True),
]
NARROW = [
    ("28x28 step: last layer 64->4 at 14x14", 16, 64, 4, 14, 14, True),
    ("28x28 step: last layer 64->8 at 7x7 (oneDNN kept)", 16, 64, 8, 7, 7, True),
    ("32x32 step: last layer 64->12 at 16x16 (oneDNN kept)", 16, 64, 12, 16, 16, True),
]
DROPOUT = [("28x28 step: dropout on [16, 64, 14, 14]", 16, 64, 64, 14, 14, True)]


def measure(threads: int, repeats: int) -> list[dict]:
    import torch
    from speed import _median_seconds  # one warm-up, then the median of the repeats
    from torch import nn

    from flowaug.flows.conv import NarrowConv, PointwiseConv
    from flowaug.flows.dropout import Dropout

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rows = []
    for kind, cases in (("pointwise", POINTWISE), ("narrow", NARROW), ("dropout", DROPOUT)):
        for name, batch, cin, cout, height, width, bias in cases:
            if kind == "pointwise":
                ours = PointwiseConv(cin, cout, bias=bias)
                theirs = nn.Conv2d(cin, cout, 1, bias=bias)
            elif kind == "narrow":
                ours = NarrowConv(cin, cout, 3)
                theirs = nn.Conv2d(cin, cout, 3, padding=1)
            else:
                ours, theirs = Dropout(0.2).train(), nn.Dropout(0.2).train()
            if kind != "dropout":
                theirs.load_state_dict(ours.state_dict())
            x = torch.randn(batch, cin, height, width, requires_grad=True)
            grad = torch.randn(batch, cout, height, width)
            row = {"kind": kind, "case": name, "threads": threads}
            for label, layer in (("torch", theirs), ("flowaug", ours)):
                with torch.no_grad():
                    row[f"{label}_forward_us"] = 1e6 * _median_seconds(
                        lambda f=layer, v=x: f(v), repeats
                    )
                row[f"{label}_train_us"] = 1e6 * _median_seconds(
                    lambda f=layer, v=x, g=grad: f(v).backward(g), repeats
                )
            rows.append(row)
    return rows


def markdown(report: dict) -> str:
    lines = [
        "# CPU kernels of the coupling networks: flowaug's layers against torch's",
        "",
        f"Command: `{report['command']}`; torch {report['torch']}, {report['machine']}. "
        "Median us over the repeats; 'train' is forward + backward; ratio = torch / flowaug "
        "(above 1: flowaug faster). Rows marked 'oneDNN kept' run the same convolution on both "
        "sides: their ratios show this run's noise (flowaug's side is measured second).",
        "",
        "| threads | case | torch fwd | flowaug fwd | ratio | torch train | flowaug train "
        "| ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['threads']} | {r['case']} | {r['torch_forward_us']:.0f} | "
            f"{r['flowaug_forward_us']:.0f} | "
            f"{r['torch_forward_us'] / r['flowaug_forward_us']:.2f} | "
            f"{r['torch_train_us']:.0f} | {r['flowaug_train_us']:.0f} | "
            f"{r['torch_train_us'] / r['flowaug_train_us']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.worker is not None:  # one thread count per process, OpenMP fixed from the start
        print(json.dumps(measure(args.worker, args.repeats)))
        return
    rows = []
    for threads in args.threads:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        out = subprocess.run(
            [sys.executable, __file__, "--worker", str(threads), "--repeats", str(args.repeats)],
            env=env, check=True, capture_output=True, text=True,
        )
        rows += json.loads(out.stdout.strip().splitlines()[-1])
    import torch

    report = {
        "command": "python benchmarks/cpu_kernels.py " + " ".join(argv or sys.argv[1:]),
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "rows": rows,
    }
    print(markdown(report))
    if not args.no_write:
        write_report("cpu_kernels", report, markdown)


if __name__ == "__main__":
    main()
