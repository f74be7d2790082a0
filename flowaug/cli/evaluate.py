"""``flowaug evaluate``: reads ``--data``, calls :func:`flowaug.evaluate.evaluate` and prints its
report as a table (and writes it as JSON with ``--json``)."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from flowaug.cli.common import DATA_HELP, add_column_arguments, check_at_least
from flowaug.cli.registry import command
from flowaug.data import FlowData, as_flow_data, load_data, load_hf_dataset
from flowaug.evaluate import PRECISION_MEANS, RECALL_MEANS, evaluate, held_out_rows, scope_text
from flowaug.io import atomic_write_bytes, load


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL_DIR", help="folder written by `flowaug fit`")
    p.add_argument("--data", required=True, metavar="SPEC",
                   help=DATA_HELP + "; rows with is_synthetic=True are skipped")
    p.add_argument("--n-per-class", type=int, default=100, metavar="N", help="synthetic samples "
                   "per class for the memorization and fidelity checks")
    p.add_argument("--temperature", type=float, default=0.8, metavar="T",
                   help="temperature of the samples")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="seed of the noise and of the samples")
    p.add_argument("--batch-size", type=int, default=256, metavar="B", help="samples per pass")
    p.add_argument("--real-per-class", type=int, metavar="K", help="train the helps/hurts check's "
                   "classifier on K real rows per class only (what a user with K labels per "
                   "class has); default: every training row")
    add_column_arguments(p)
    p.add_argument("--json", metavar="PATH", help="also write the report to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="hide the progress lines")


def _real_rows(args: argparse.Namespace, model: Any) -> tuple[Any, int]:
    """The rows of ``--data`` without its ``is_synthetic`` ones, as a
    :class:`~flowaug.data.FlowData` (tables through the model's column encoders), and the
    number of synthetic rows skipped."""
    from flowaug.hf import SYNTHETIC_COLUMN

    encoder = getattr(model, "encoder", None)  # a TabularFlow built by from_frame
    if str(args.data).startswith("sklearn:") and encoder is None:
        return load_data(args.data), 0  # as bundled (digits: 17 levels), not via 8-bit images
    ds, skipped = load_hf_dataset(args.data), 0
    if SYNTHETIC_COLUMN in ds.column_names:
        column = ds.select_columns([SYNTHETIC_COLUMN]).with_format("numpy")[SYNTHETIC_COLUMN]
        marks = np.asarray(column, dtype=bool)
        skipped = int(marks.sum())
        ds = ds.select(np.flatnonzero(~marks), keep_in_memory=True)  # nothing in --data
        ds = ds.remove_columns(SYNTHETIC_COLUMN)
    if encoder is None:
        columns = dict(image_column=args.image_column, label_column=args.label_column)
        return as_flow_data(ds, **columns), skipped
    frame = ds.to_pandas()
    model.check_frame(frame, what=f"--data {args.data!r}", exact=True)
    x, y = model.encode_frame(frame, seed=args.seed)
    y = None if y is None else y.cpu()
    return FlowData(x.detach().cpu().float(), y, num_classes=int(model.num_classes)), skipped


def _check_data(args: argparse.Namespace, model: Any, data: Any) -> None:
    """``--data`` fits the model: labelled, of its shape and at most its classes."""
    what = f"--data {args.data!r}"
    if data.y is None:
        raise ValueError(f"{what} has no labels; evaluation needs a label column (pass "
                         "--label-column).")
    if tuple(data.event_shape) != tuple(model.event_shape):
        raise ValueError(f"{what} holds samples of shape {list(data.event_shape)} but the model "
                         f"expects {list(model.event_shape)}.")
    if data.num_classes > model.num_classes:
        raise ValueError(f"{what} has {data.num_classes} classes but the model has "
                         f"{model.num_classes}.")
    names = getattr(model, "class_names", None)
    if names and data.class_names and list(names) != list(data.class_names):
        print(f"flowaug evaluate: warning: the data's class names {data.class_names[:5]} differ "
              f"from the model's {list(names)[:5]}; classes are matched by index.",
              file=sys.stderr)


def _progress_lines() -> Callable[[str], None]:
    """Numbered progress lines on stderr, with the seconds since the start."""
    started, count = time.perf_counter(), itertools.count(1)

    def line(what: str) -> None:
        seconds = time.perf_counter() - started
        print(f"[{next(count)}/4 {seconds:4.0f} s] {what}", file=sys.stderr, flush=True)

    return line


@command(
    "evaluate",
    help="score a saved model on a data set: bits/dim, accuracy, memorization",
    arguments=_evaluate_arguments,
    description=(
        "Reports, for the real rows of --data: the test bits/dim under the model (discrete for "
        "integer images, one fixed-seed dequantization draw), the accuracy of the flow as a "
        "Bayes classifier (argmax of p(x | c), uniform prior), and, for --n-per-class synthetic "
        "samples per class, the memorization check (distance of each sample to its closest "
        "data row, against the data's own nearest-neighbour distances: share of near-copies), "
        "fidelity (k-NN precision / recall, MMD), and whether the samples help: a logistic "
        "regression trained on real rows, on synthetic rows only (classification accuracy "
        "score) and on real + synthetic rows, each scored on held-out real rows, with a one-line "
        "verdict. On the data the model was fitted on, the rows the fit held out (MODEL/"
        "split.json) are the test rows; on other data a warning says the rows may have been "
        "trained on. Distances are measured on image values in [0, 1] (model space for tables)."
    ),
)
def _evaluate(args: argparse.Namespace) -> int:
    check_at_least("--n-per-class", args.n_per_class, 1)
    check_at_least("--batch-size", args.batch_size, 1)
    check_at_least("--real-per-class", args.real_per_class, 1)
    started = time.perf_counter()
    model = load(args.model)
    data, skipped = _real_rows(args, model)
    _check_data(args, model, data)
    held = held_out_rows(args.model, data.y.numpy())
    if held is None:
        print(f"flowaug evaluate: WARNING: {args.model} holds no record that the rows of "
              f"--data {args.data!r} were held out from its training: if the model trained on "
              "them, bits/dim and accuracies below are optimistic. Evaluate on the data the fit "
              "was given (its held-out rows are then used) or on rows it never saw.",
              file=sys.stderr)
    report = evaluate(
        model, data, held_out=held, n_per_class=args.n_per_class, temperature=args.temperature,
        seed=args.seed, batch_size=args.batch_size, real_per_class=args.real_per_class,
        progress=None if args.no_progress else _progress_lines(),
    )
    report = {
        "model": str(args.model), "data": str(args.data), "n_rows": report["n_rows"],
        "skipped_synthetic_rows": skipped, **report,
        "seconds": round(time.perf_counter() - started, 2),
    }
    _print_report(args, report, scope_text(held, len(data)))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, (json.dumps(report, indent=2) + "\n").encode())
        print(f"report -> {path}")
    return 0


def _print_report(args: argparse.Namespace, report: dict[str, Any], scope: str) -> None:
    checks, memo, fidelity = (report[k] for k in ("classifier_checks", "memorization", "fidelity"))
    levels, num_classes = report["levels"], report["num_classes"]
    discrete = report["bits_per_dim_kind"] == "discrete"
    kind = f"discrete, {levels} levels" if discrete else "continuous"
    rows = [
        (f"bits/dim ({kind})", f"{report['bits_per_dim']:.4f}"),
        ("the flow's own classifier (Bayes rule)", f"{report['classifier_accuracy']:.4f}"),
        ("synthetic samples", f"{num_classes} x {args.n_per_class}, T={args.temperature}"),
        (f"classifier on real rows ({checks['n_real_train']})", f"{checks['real_accuracy']:.4f}"),
        ("  on synthetic rows only (CAS)", f"{checks['synthetic_only_accuracy']:.4f}"),
        ("  on real + synthetic rows", f"{checks['real_plus_synthetic_accuracy']:.4f}"),
        (f"near-copies (DCR < {memo['threshold']:g} x median NN)",
         f"{100 * memo['share_near_copies']:.1f}%"),
        ("exact copies", f"{100 * memo['share_exact_copies']:.1f}%"),
        ("DCR median / data NN median",
         f"{memo['dcr']['median']:.4f} / {memo['train_nn']['median']:.4f}"),
    ]
    if fidelity is not None:
        rows.append((f"precision / recall (k={fidelity['k']})",
                     f"{fidelity['precision']:.3f} / {fidelity['recall']:.3f}"))
        rows.append(("MMD^2 (RBF)", f"{fidelity['mmd_rbf']:.5f}"))
    skipped = report["skipped_synthetic_rows"]
    extra = f", {skipped} synthetic rows skipped" if skipped else ""
    note, requantized_from = "", report["requantized_from_levels"]
    if requantized_from is not None:
        source = "float" if requantized_from == 0 else f"{requantized_from}-level"
        note = f"; {source} images requantized to {levels} levels"
    print(f"{args.data}: {report['n_rows']} rows, {num_classes} classes{extra}{note}")
    print(f"scored on {scope}; classifiers: logistic regression, tested on "
          f"{checks['n_test']} held-out real rows")
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    if fidelity is not None:
        print(f"  {PRECISION_MEANS}.\n  {RECALL_MEANS}.")
    print(checks["verdict"])
