"""``flowaug generate``: a large synthetic set as Parquet shards, from one or many processes."""

from __future__ import annotations

import argparse
import time

import torch

from flowaug.cli.common import (
    DATA_HELP,
    add_column_arguments,
    add_sampling_arguments,
    check_at_least,
)
from flowaug.cli.registry import command
from flowaug.data import find_columns, load_hf_dataset
from flowaug.io import load


def _generate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL_DIR", help="folder written by `flowaug fit`")
    p.add_argument("--like", required=True, metavar="SPEC",
                   help=f"data whose Features the synthetic rows copy: {DATA_HELP}")
    p.add_argument("--out", required=True, metavar="OUT_DIR", help="folder of the Parquet shards")
    p.add_argument("--n-per-class", type=int, required=True, metavar="N", help="rows per class")
    p.add_argument("--rows-per-shard", type=int, default=10_000, metavar="R",
                   help="rows per Parquet file")
    add_sampling_arguments(p)
    add_column_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


@command(
    "generate",
    help="write a large synthetic set as Parquet shards, from one or many processes",
    arguments=_generate_arguments,
    description=(
        "Generates --n-per-class synthetic images per class with the Features of --like and "
        "writes them as Parquet shards under --out with flowaug.hf.write_synthetic_shards. "
        "Under `accelerate launch` or `torchrun` every process writes its own shards on its own "
        "device; the rows do not depend on the number of processes, and a rerun after a crash "
        "writes only the missing shards. Read the set with "
        "flowaug.hf.load_synthetic_shards(OUT_DIR)."
    ),
)
def _generate(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from flowaug.hf import load_synthetic_shards, write_synthetic_shards

    check_at_least("--n-per-class", args.n_per_class, 0)
    check_at_least("--batch-size", args.batch_size, 1)
    started = time.perf_counter()
    # without cpu=True, a rank of a multi-process CPU launch runs as a lone process
    state = PartialState(cpu=not torch.cuda.is_available())
    model = load(args.model).to(state.device)
    like = load_hf_dataset(args.like, option="--like")
    image_column, label_column = find_columns(like.features, args.image_column, args.label_column)
    if image_column is None or label_column is None:
        raise ValueError(f"--like {args.like!r} needs an image column and a label column, found "
                         f"{image_column!r} and {label_column!r} among {list(like.features)}; "
                         "pass --image-column / --label-column.")
    written = write_synthetic_shards(
        like, model, args.out, n_per_class=args.n_per_class, image_column=image_column,
        label_column=label_column, seed=args.seed, temperature=args.temperature,
        batch_size=args.batch_size, filter_threshold=args.filter_threshold,
        rows_per_shard=args.rows_per_shard, progress=not args.no_progress,
    )
    state.wait_for_everyone()
    if state.is_main_process:
        total = load_synthetic_shards(args.out, progress=not args.no_progress).num_rows
        print(f"{total} synthetic rows in Parquet shards -> {args.out} ({state.num_processes} "
              f"process(es), {len(written)} shards from this one, "
              f"{time.perf_counter() - started:.0f} s); read them with "
              f"flowaug.hf.load_synthetic_shards({str(args.out)!r})")
    return 0
