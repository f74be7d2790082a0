"""Fit-time benchmark: wall time, peak memory and validation bits/dim of the default `flowaug fit`
on a user's image folders, against the defaults of an earlier tree in the same run.

Run:  python benchmarks/fit_time.py [--threads 2] [--baseline-tree DIR] [--baseline-budget 11m]
      [--only shapes digits28] [--seeds 0] [--name fit_time]
      [--reference-bpd 1.7578 --reference-label "..."]  (instead of a baseline run)

Protocol:
- data (``benchmarks/fit_data.py``, made offline in a temporary folder): ``shapes``, 240 RGB
  32x32 images in 4 classes; ``digits28``, scikit-learn's 1,797 digits at 28x28 grayscale.
- ``flowaug fit --data FOLDER --out OUT --no-progress --seed S``, nothing else: the defaults a
  new user gets, including the held-out validation part (10%) that early stopping reads. Each
  run is its own process with ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` = ``--threads``, runs
  one after another (never two at once); wall time around it, its peak RSS from ``os.wait4``
  (that process's own ``ru_maxrss``), the validation bits/dim (discrete) from the run's
  ``history.json`` (the best one: the weights the run saves).
- baseline: the same command with ``PYTHONPATH=--baseline-tree`` (a checkout of an earlier
  commit, e.g. ``git worktree add /tmp/before 2d8cb00``), given ``--max-time
  --baseline-budget``: what "today's default reaches in 11 minutes" means in issue 14. Its
  validation part is the same rows (same split function and seed).
- verdict per data set: the new default meets the target when its wall time is at most 180 s
  and its best validation bits/dim is at most the baseline's (or ``--reference-bpd``, a
  baseline's figure stored by an earlier run, when no baseline is run).

Writes benchmarks/results/fit_time.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fit_data import make_digits28_folder, make_shapes_folder  # noqa: E402
from report import write_report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 180.0
DATA = {"shapes": make_shapes_folder, "digits28": make_digits28_folder}


def run_fit(tree: Path, data: Path, out: Path, seed: int, threads: int, extra: list[str]) -> dict:
    """One ``flowaug fit`` process from ``tree``: wall time, peak RSS, the history's figures."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "flowaug", "fit", "--data", str(data), "--out", str(out),
               "--no-progress", "--seed", str(seed), *extra]
    log = out.with_name(out.name + ".log")
    with open(log, "w") as stdout:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=stdout, stderr=subprocess.STDOUT,
                                   cwd=tree)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak RSS
        wall = time.perf_counter() - start
    output = log.read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output}")
    history = json.loads((out / "history.json").read_text())
    plan = [line for line in output.splitlines() if line.startswith(("model:", "training:"))]
    return {
        "wall_s": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "best_val_bpd": history["best_val_bpd"],
        "best_step": history["best_step"],
        "steps": history["steps"],
        "stopped_early": history["stopped_early"],
        "curve": [(r["step"], round(r["time"], 1), r["val_bpd"]) for r in history["records"]],
        "plan": plan,
    }


def reference_for(values: list[float] | None, seeds: list[int], seed: int) -> float | None:
    """``--reference-bpd``'s value for ``seed``: the one value, or the seed's own."""
    if values is None:
        return None
    if len(values) == 1:
        return values[0]
    if len(values) != len(seeds):
        raise SystemExit(f"--reference-bpd takes one value or one per seed ({len(seeds)}), "
                         f"got {len(values)}.")
    return values[seeds.index(seed)]


def markdown(report: dict) -> str:
    lines = [
        "# Default `flowaug fit` on image folders: time, memory, validation bits/dim",
        "",
        f"Command: `{report['command']}`; torch {report['torch']}, {report['machine']}, "
        f"{report['threads']} threads per run. " + (
            f"Baseline: `{report['baseline_label']}` with `--max-time "
            f"{report['baseline_budget']}`." if report.get("baseline_label") else
            f"No baseline run; reference bits/dim per seed {report['reference_bpd']}: "
            f"{report.get('reference_label', '')}." if report.get("reference_bpd") else
            "No baseline run."
        ),
        "",
        "'reached' is the training time (s, the history's clock) at which the default first "
        "validated at or below the baseline's best bits/dim (or the reference)." + (
            f" {report['note']}" if report.get("note") else ""
        ),
        "",
        "| data | seed | run | wall (s) | peak RSS (MB) | best val bits/dim | at step | steps | "
        "reached | target met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        base = row.get("baseline")
        for name in ("baseline", "default"):
            r = row.get(name)
            if r is None:
                continue
            peak = "-" if r.get("peak_rss_mb") is None else f"{r['peak_rss_mb']:.0f}"
            met = "" if name == "baseline" or "met" not in row else (
                "yes" if row["met"] else "no"
            )
            target = base["best_val_bpd"] if base is not None else row.get("reference_bpd")
            reached = "" if name == "baseline" or target is None else next(
                (f"{t:.0f}" for _, t, bpd in r["curve"] if bpd <= target), "never"
            )
            lines.append(
                f"| {row['data']} | {row['seed']} | {name} | {r['wall_s']:.0f} | {peak} | "
                f"{r['best_val_bpd']:.4f} | {r['best_step']} | {r['steps']} | {reached} | {met} |"
            )
    lines += ["", "Plans printed by the runs:", ""]
    for row in report["rows"]:
        for name in ("baseline", "default"):
            if row.get(name):
                lines.append(f"- {row['data']} {name}: " + " / ".join(row[name]["plan"]))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--baseline-tree", type=Path, default=None)
    parser.add_argument("--baseline-label", default="")
    parser.add_argument("--baseline-budget", default="11m")
    parser.add_argument("--only", nargs="+", choices=sorted(DATA), default=sorted(DATA))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--reference-bpd", type=float, nargs="+", default=None,
                        help="without --baseline-tree: the bits/dim to meet, one or one per "
                        "seed (a stored baseline's best, e.g. 1.7578, the issue-era digits28 "
                        "figure in fit_time.md)")
    parser.add_argument("--reference-label", default="")
    parser.add_argument("--name", default="fit_time", help="results file name (no suffix)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in args.only:
            folder = DATA[name](tmp / "data" / name)
            for seed in args.seeds:
                row: dict = {"data": name, "seed": seed}
                if args.baseline_tree is not None:
                    row["baseline"] = run_fit(
                        args.baseline_tree.resolve(), folder, tmp / f"{name}-{seed}-baseline",
                        seed, args.threads, ["--max-time", args.baseline_budget],
                    )
                row["default"] = run_fit(ROOT, folder, tmp / f"{name}-{seed}", seed,
                                         args.threads, [])
                target = (row["baseline"]["best_val_bpd"] if "baseline" in row
                          else reference_for(args.reference_bpd, args.seeds, seed))
                row["reference_bpd"] = target
                if target is not None:
                    row["met"] = (row["default"]["wall_s"] <= TARGET_SECONDS
                                  and row["default"]["best_val_bpd"] <= target)
                rows.append(row)
                summary = {k: (v["wall_s"], v["best_val_bpd"]) for k, v in row.items()
                           if isinstance(v, dict)}
                print(name, seed, summary, flush=True)
    report = {
        "command": "python benchmarks/fit_time.py " + " ".join(argv or sys.argv[1:]),
        "torch": __import__("torch").__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "threads": args.threads,
        "baseline_label": args.baseline_label or (
            str(args.baseline_tree) if args.baseline_tree is not None else None
        ),
        "baseline_budget": args.baseline_budget,
        "reference_bpd": args.reference_bpd,
        "reference_label": args.reference_label,
        "rows": rows,
    }
    if not args.no_write:
        write_report(args.name, report, markdown)


if __name__ == "__main__":
    main()
