"""bf16 autocast on CPU for `flowaug fit`: speed per step, density and accuracy against fp32.

Run:  OMP_NUM_THREADS=1 python benchmarks/bf16_cpu.py [--steps 300] [--seeds 0]

Protocol:
- scikit-learn digits, 8x8, 17 levels, split as `flowaug quickstart` splits it (stratified
  70/30 train/test, random_state=0; 15% of the training part for validation: 1068 / 189 / 540).
- the quickstart's model and training settings (flowaug.cli.QUICKSTART_MODEL and
  QUICKSTART_TRAIN: Glow depth 8, hidden 64, spline couplings, dropout 0.2, batch 64, lr 2e-3,
  EMA 0.99, validation every 50 steps), ``--steps`` steps, one CPU thread.
- per seed, one fit with ``mixed_precision="no"`` and one with ``"bf16"`` from the same seed
  (same initial weights, data order, noise and dropout).
- speed: (a) wall-clock seconds of the whole fit divided by its steps (validations included);
  (b) seconds of one training step (forward, backward, AdamW) on a batch of 64, timed with
  flowaug.cli.fit_plan.seconds_per_step (the estimate `flowaug fit` prints), median of ``--repeats``
  rounds, the two precisions interleaved round-robin so drifts in machine load hit both.
- density: the trainer's own final and best validation bits/dim (computed under the run's
  autocast), and the returned model's bits/dim re-evaluated in float32 on the validation and
  test parts (discrete, 17 levels, mean of 4 dequantization draws): the fair comparison.
- accuracy: the flow's Bayes classifier on the test part, and the augmentation check of
  `flowaug evaluate` (logistic regression trained on the training part, on 100 synthetic
  samples per class at T=0.8 only, and on both, scored on the test part).
- larger images, speed only: one training step of the Glow `flowaug fit` builds for a folder of
  120 RGB 32x32 images in 4 classes (flowaug.training.build_model defaults: depth 12, hidden 128),
  at the fit's default batch (10) and at 64, on random 8-bit images (a step costs the same on
  any pixels), interleaved like (b).
- verdict: bf16 is "clearly no worse" when its float32 test bits/dim exceeds fp32's by at most
  0.002 (well below the differences between seeds) and its test accuracies are within 1 point,
  on every seed; it is "faster" when its training step is at least 1.1x faster.

Writes benchmarks/results/bf16_cpu.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"
PRECISIONS = ("no", "bf16")
BPD_TOLERANCE = 0.002  # bits/dim
ACCURACY_TOLERANCE = 1.0  # points
FASTER = 1.1  # step speed-up that counts as faster


def quickstart_split() -> tuple[Any, Any, Any]:
    from flowaug.cli import quickstart_split as split

    data, *parts = split()
    return tuple(data.subset(i) for i in parts)


def build(seed: int) -> Any:
    from flowaug.cli import QUICKSTART_MODEL
    from flowaug.flows.glow import Glow

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Glow((1, 8, 8), num_classes=10, levels=17, **QUICKSTART_MODEL)


def config(precision: str, steps: int, seed: int) -> Any:
    from flowaug.cli import QUICKSTART_TRAIN
    from flowaug.training import TrainConfig

    return TrainConfig(
        max_steps=steps, seed=seed, progress=False, mixed_precision=precision, cpu=True,
        **QUICKSTART_TRAIN,
    )


def step_seconds(train: Any, repeats: int, seed: int) -> dict[str, float]:
    """Median seconds of one training step per precision, the precisions interleaved."""
    from flowaug.cli.fit_plan import seconds_per_step

    model = build(seed)
    times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for _ in range(repeats):
        for p in PRECISIONS:
            times[p].append(seconds_per_step(model, train.x, train.y, config(p, 1, seed), 10))
    return {p: statistics.median(t) for p, t in times.items()}


def step_seconds_32(repeats: int, seed: int) -> dict[str, dict[str, float]]:
    """Median seconds of one training step of the default Glow for 120 RGB 32x32 images in 4
    classes, per batch size and precision, the precisions interleaved."""
    from flowaug.cli.fit_plan import seconds_per_step
    from flowaug.data import FlowData
    from flowaug.training import TrainConfig, build_model

    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (120, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.arange(120) % 4
    data = FlowData(x=x, y=y, levels=256, class_names=["a", "b", "c", "d"], num_classes=4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(data, num_samples=84)
    result: dict[str, dict[str, float]] = {}
    for batch in (10, 64):
        times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
        for _ in range(repeats):
            for p in PRECISIONS:
                cfg = TrainConfig(
                    batch_size=batch, max_steps=1, mixed_precision=p, cpu=True, progress=False
                )
                times[p].append(seconds_per_step(model, x, y, cfg, 5))
        result[str(batch)] = {p: statistics.median(t) for p, t in times.items()}
    return result


def flow_accuracy(model: Any, data: Any) -> float:
    from flowaug.pixels import image_to_model
    from flowaug.sampling import eval_mode

    x = image_to_model(data.x.float() / 16, 17)
    with eval_mode(model), torch.no_grad():
        pred = model.classify(x).argmax(1)
    return float((pred == data.y).double().mean())


def one_fit(precision: str, steps: int, seed: int, train: Any, val: Any, test: Any) -> dict:
    from flowaug.evaluate import classifier_checks
    from flowaug.evaluate import mean_bits_per_dim as _mean_bpd
    from flowaug.pixels import model_to_image
    from flowaug.sampling import sample_per_class
    from flowaug.training import FlowTrainer

    model = build(seed)
    started = time.perf_counter()
    history = FlowTrainer(model, config(precision, steps, seed)).fit(train, val)
    seconds = time.perf_counter() - started
    x_syn, y_syn = sample_per_class(model, 100, 0.8, seed)
    checks = classifier_checks(
        train.x.float() / 16, train.y, test.x.float() / 16, test.y,
        model_to_image(x_syn, 17), y_syn, seed=seed,
    )
    return {
        "precision": precision,
        "seed": seed,
        "steps": history.steps,
        "fit_seconds": seconds,
        "seconds_per_step_with_validation": seconds / history.steps,
        "final_val_bpd_trainer": history.records[-1]["val_bpd"],
        "best_val_bpd_trainer": history.best_val_bpd,
        "best_step": history.best_step,
        "val_bpd_fp32": _mean_bpd(model, val.x, val.y, seed=seed),
        "test_bpd_fp32": _mean_bpd(model, test.x, test.y, seed=seed),
        "flow_test_accuracy": flow_accuracy(model, test),
        "logreg_real": checks["real_accuracy"],
        "logreg_synthetic_only": checks["synthetic_only_accuracy"],
        "logreg_real_plus_synthetic": checks["real_plus_synthetic_accuracy"],
        "skipped_steps": history.records[-1].get("bad_steps", 0),
    }


def judge(runs: list[dict]) -> dict[str, Any]:
    """Per seed, bf16 minus fp32; the verdict over all seeds."""
    by = {(r["seed"], r["precision"]): r for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    deltas = []
    for s in seeds:
        a, b = by[(s, "no")], by[(s, "bf16")]
        deltas.append(
            {
                "seed": s,
                "test_bpd": b["test_bpd_fp32"] - a["test_bpd_fp32"],
                "val_bpd": b["val_bpd_fp32"] - a["val_bpd_fp32"],
                "flow_test_accuracy_points": 100
                * (b["flow_test_accuracy"] - a["flow_test_accuracy"]),
                "logreg_real_plus_synthetic_points": 100
                * (b["logreg_real_plus_synthetic"] - a["logreg_real_plus_synthetic"]),
                "logreg_synthetic_only_points": 100
                * (b["logreg_synthetic_only"] - a["logreg_synthetic_only"]),
                "speedup_fit": a["fit_seconds"] / b["fit_seconds"],
            }
        )
    no_worse = all(
        d["test_bpd"] <= BPD_TOLERANCE
        and d["flow_test_accuracy_points"] >= -ACCURACY_TOLERANCE
        and d["logreg_real_plus_synthetic_points"] >= -ACCURACY_TOLERANCE
        for d in deltas
    )
    return {"deltas": deltas, "bf16_no_worse": no_worse}


def conclusion(result: dict) -> str:
    """The recommendation the figures support, in one paragraph."""
    speed, judged = result["step_seconds"], result["judgement"]
    speedup = speed["no"] / speed["bf16"]
    deltas = [d["test_bpd"] for d in judged["deltas"]]
    big = result.get("step_seconds_32x32", {})
    density = (
        "clearly no worse"
        if judged["bf16_no_worse"]
        else f"worse in bits/dim by {min(deltas):+.4f} to {max(deltas):+.4f}"
    )
    pace = "faster" if speedup >= FASTER else "no faster"
    text = (
        f"On 8x8 digits bf16 is {pace} ({speedup:.2f}x per step) and {density} (float32 test "
        f"bits/dim, {len(deltas)} seeds)."
    )
    if big:
        text += " On the 32x32 RGB Glow a bf16 step is " + ", ".join(
            f"{t['no'] / t['bf16']:.2f}x as fast at batch {b}" for b, t in big.items()
        ) + "."
    if judged["bf16_no_worse"] and speedup >= FASTER:
        return text + " bf16 can be the CPU default."
    return text + " So bf16 stays opt-in (`--mixed-precision bf16`), not the CPU default."


def markdown(result: dict) -> str:
    runs, judged, speed = result["runs"], result["judgement"], result["step_seconds"]
    lines = [
        "# bf16 autocast on CPU for `flowaug fit` (scikit-learn digits)",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Quickstart model and training settings, {result['steps']} steps, the quickstart split "
        "(1068 train / 189 validation / 540 test), one CPU thread, the same seed for both "
        f"precisions. Machine: {result['machine']} (shared; absolute times are noisy).",
        "",
        "## Speed",
        "",
        "| precision | s / step, one training step (median of "
        f"{result['repeats']}, interleaved) | s / step, whole fit incl. validation |",
        "|---|---|---|",
    ]
    for p in PRECISIONS:
        fits = [r["seconds_per_step_with_validation"] for r in runs if r["precision"] == p]
        lines.append(f"| {p} | {speed[p]:.4f} | {statistics.mean(fits):.4f} |")
    lines += [
        "",
        f"bf16 speed-up: {speed['no'] / speed['bf16']:.2f}x per training step, "
        + ", ".join(f"{d['speedup_fit']:.2f}x" for d in judged["deltas"])
        + " per whole fit (per seed).",
    ]
    big = result.get("step_seconds_32x32")
    if big:
        lines += [
            "",
            "One training step of the default Glow for 120 RGB 32x32 images (depth 12, hidden "
            f"128; median of {result['repeats']}, interleaved):",
            "",
            "| batch | s / step, no | s / step, bf16 | bf16 speed-up |",
            "|---|---|---|---|",
        ]
        for b, t in big.items():
            lines.append(f"| {b} | {t['no']:.4f} | {t['bf16']:.4f} | {t['no'] / t['bf16']:.2f}x |")
    lines += [
        "",
        "## Density and accuracy",
        "",
        "bits/dim are discrete (17 levels); 'trainer' values are computed under the run's own "
        "autocast, 'fp32' ones re-evaluate the returned model in float32 (mean of 4 "
        "dequantization draws). Accuracies on the 540 test images.",
        "",
        "| seed | precision | final val bpd (trainer) | best val bpd (trainer, step) | val bpd "
        "fp32 | test bpd fp32 | flow classifier | logreg real | synthetic only | real + "
        "synthetic |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['seed']} | {r['precision']} | {r['final_val_bpd_trainer']:.4f} | "
            f"{r['best_val_bpd_trainer']:.4f} ({r['best_step']}) | {r['val_bpd_fp32']:.4f} | "
            f"{r['test_bpd_fp32']:.4f} | {r['flow_test_accuracy']:.4f} | "
            f"{r['logreg_real']:.4f} | {r['logreg_synthetic_only']:.4f} | "
            f"{r['logreg_real_plus_synthetic']:.4f} |"
        )
    lines += ["", "bf16 minus fp32:", ""]
    for d in judged["deltas"]:
        lines.append(
            f"- seed {d['seed']}: test bpd {d['test_bpd']:+.4f}, val bpd {d['val_bpd']:+.4f}, "
            f"flow classifier {d['flow_test_accuracy_points']:+.1f} points, real + synthetic "
            f"{d['logreg_real_plus_synthetic_points']:+.1f} points, synthetic only "
            f"{d['logreg_synthetic_only_points']:+.1f} points"
        )
    verdict = "clearly no worse" if judged["bf16_no_worse"] else "NOT clearly no worse"
    lines += [
        "",
        f"Density and accuracy: bf16 is {verdict} than fp32 here (rule: float32 test bits/dim "
        f"at most {BPD_TOLERANCE} above fp32's and test accuracies within "
        f"{ACCURACY_TOLERANCE:g} point, on every seed). The trainer's own validation bits/dim "
        "under bf16 autocast read higher than the same weights in float32, so compare bf16 "
        "runs by float32 evaluations.",
        "",
        f"Conclusion: {result['conclusion']}",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--repeats", type=int, default=5, help="rounds of step timing")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    train, val, test = quickstart_split()
    speed = step_seconds(train, args.repeats, args.seeds[0])
    print(f"step seconds: {speed}", flush=True)
    speed_32 = step_seconds_32(args.repeats, args.seeds[0])
    print(f"step seconds, 32x32 RGB: {speed_32}", flush=True)
    runs = []
    for seed in args.seeds:
        for p in PRECISIONS:
            runs.append(one_fit(p, args.steps, seed, train, val, test))
            print(json.dumps(runs[-1]), flush=True)
    result = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/bf16_cpu.py "
        + " ".join(sys.argv[1:]),
        "steps": args.steps,
        "repeats": args.repeats,
        "machine": f"{platform.machine()}, CPython {platform.python_version()}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} thread",
        "step_seconds": speed,
        "step_seconds_32x32": speed_32,
        "runs": runs,
        "judgement": judge(runs),
    }
    result["conclusion"] = conclusion(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bf16_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "bf16_cpu.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
