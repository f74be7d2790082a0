"""Large synthetic image sets, generated across processes and written as Parquet shards.

:func:`write_synthetic_shards` cuts the requested rows into shards of at most
``rows_per_shard`` rows, each with its own seed, and writes the shards of this process
(``shard % num_processes == process_index``) as ``shard-NNNNN.parquet`` files; under
``accelerate launch`` or ``torchrun`` every rank finds its index by itself. The rows of a shard
depend only on the model, the request and the shard's index, so the union is the same for 1 or
8 processes, and a rerun after a crash writes only the shards that are missing (each file is
written under a temporary name and renamed when complete). Every shard's SHA-256 is recorded
beside it in ``shard-NNNNN.sha256`` (``sha256sum -c`` reads it): a rerun writes a shard that no
longer matches again, and loading refuses one. :func:`load_synthetic_shards` reads the finished
set back as one ``datasets.Dataset`` with the reference dataset's ``Features`` and
``is_synthetic=True``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from datasets import Features
from tqdm.auto import tqdm

from flowaug._checks import check_temperature
from flowaug.flows.base import ConditionalFlow, check_conditional_model
from flowaug.integrations.hf.columns import (
    ImageCodec,
    check_columns,
    check_dataset,
    flagged,
    model_digest,
    no_rows,
    progress_bars,
)
from flowaug.integrations.hf.rows import RowGenerator
from flowaug.sampling import class_counts
from flowaug.seeding import derive_seed
from flowaug.sizes import check_count_on_disk

__all__ = ["MANIFEST", "load_synthetic_shards", "plan_shards", "write_synthetic_shards"]

MANIFEST = "flowaug_shards.json"
_FORMAT = 1
# what a user changed, for each manifest entry that can differ
_MANIFEST_NAMES = {
    "model": "the model's weights",
    "features": "the features of the reference dataset",
    "shards": "n_per_class or rows_per_shard",
}


def plan_shards(counts: Mapping[int, int], rows_per_shard: int) -> list[dict[int, int]]:
    """Cut ``{class: rows}`` into shards of at most ``rows_per_shard`` rows, in class order.

    Example:
        >>> plan_shards({0: 3, 1: 2}, rows_per_shard=2)
        [{0: 2}, {0: 1, 1: 1}, {1: 1}]
    """
    if isinstance(rows_per_shard, bool) or not isinstance(rows_per_shard, int):
        raise TypeError(f"rows_per_shard must be an int, got {rows_per_shard!r}.")
    if rows_per_shard < 1:
        raise ValueError(f"rows_per_shard must be >= 1, got {rows_per_shard}.")
    shards: list[dict[int, int]] = []
    current: dict[int, int] = {}
    room = rows_per_shard
    for cls in sorted(counts):
        left = int(counts[cls])
        while left > 0:
            take = min(left, room)
            current[cls] = current.get(cls, 0) + take
            left, room = left - take, room - take
            if room == 0:
                shards.append(current)
                current, room = {}, rows_per_shard
    if current:
        shards.append(current)
    return shards


def _shard_path(out_dir: Path, index: int) -> Path:
    return out_dir / f"shard-{index:05d}.parquet"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _shard_damage(shard: Path, rows: int) -> str | None:
    """Why a present shard file cannot be trusted, or ``None``.

    Its SHA-256 must match the one recorded beside it; a shard of an older flowaug, written
    without one, must at least parse and hold the ``rows`` rows the plan gives it.
    """
    recorded = shard.with_suffix(".sha256")
    if recorded.is_file():
        expected = recorded.read_text().split(maxsplit=1)[:1]
        if expected and _sha256(shard) == expected[0]:
            return None
        return f"does not match the SHA-256 recorded in {recorded.name}"
    try:
        found = pq.ParquetFile(shard).metadata.num_rows
    except (OSError, ValueError, pa.ArrowException) as err:
        return f"is not a readable Parquet file ({err})"
    return None if found == rows else f"holds {found} rows, the plan {rows}"


def _write_shard(rows: RowGenerator, counts: dict[int, int], seed: int, path: Path) -> None:
    """Write a shard unless a complete one is there: under a temporary name, its hash beside it,
    then renamed into place, so that a shard file only ever appears complete."""
    if path.exists():
        damage = _shard_damage(path, sum(counts.values()))
        if damage is None:
            return
        warnings.warn(f"{path} {damage}; writing it again.", stacklevel=3)
    shard = datasets.Dataset.from_list(list(rows.seeded(counts, seed, False)), rows.features)
    tmp = _temporary(path)
    with progress_bars(False):
        shard.to_parquet(str(tmp))
    _write_text(path.with_suffix(".sha256"), f"{_sha256(tmp)}  {path.name}\n")  # sha256sum -c
    os.replace(tmp, path)


def _temporary(path: Path) -> Path:
    """A hidden name beside ``path``, this process's own."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _write_text(path: Path, text: str) -> None:
    """Write a file atomically: concurrent ranks write identical content."""
    tmp = _temporary(path)
    tmp.write_text(text)
    os.replace(tmp, path)


def _process_layout(process_index: int | None, num_processes: int | None) -> tuple[int, int]:
    if process_index is None and num_processes is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        from accelerate import PartialState

        # without cpu=True, a rank of a multi-process CPU launch runs as a lone process
        state = PartialState(cpu=not torch.cuda.is_available())
        return state.process_index, state.num_processes
    if process_index is None or num_processes is None:
        raise ValueError(
            "pass both process_index and num_processes, or neither (then they come from "
            f"accelerate); got process_index={process_index}, num_processes={num_processes}."
        )
    if num_processes < 1 or not 0 <= process_index < num_processes:
        raise ValueError(
            f"process_index must be in [0, num_processes), got process_index={process_index}, "
            f"num_processes={num_processes}."
        )
    return int(process_index), int(num_processes)


def _shard_dir(out_dir: str | os.PathLike) -> Path:
    """``out_dir``, created, if it is new or holds shards (other ranks' temporary files are
    hidden)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {str(out)!r} exists and is not a directory.")
    visible = [] if not out.is_dir() else [f for f in out.iterdir() if not f.name.startswith(".")]
    if visible and not (out / MANIFEST).exists():
        raise ValueError(
            f"out_dir {str(out)!r} is not empty and holds no synthetic shards (no {MANIFEST}); "
            "write the shards to a new directory."
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def _write_manifest(out_dir: Path, rows: RowGenerator, seed: int, plan: list[dict]) -> None:
    """Write the manifest of this request, or check that the one there is the same request."""
    path = out_dir / MANIFEST
    manifest = {
        "format": _FORMAT,
        "model": model_digest(rows.model),
        "features": rows.features.to_dict(),
        "image_column": rows.image_column,
        "label_column": rows.label_column,
        "seed": seed,
        "temperature": rows.temperature,
        "filter_threshold": rows.filter_threshold,
        "batch_size": rows.batch_size,  # the draws depend on how they are batched
        "shards": plan,
    }
    manifest = json.loads(json.dumps(manifest))  # as it reads back (int keys become strings)
    if not path.exists():
        _write_text(path, json.dumps(manifest, indent=1))
        return
    existing = json.loads(path.read_text())
    if existing != manifest:
        changed = [k for k in sorted(manifest) if existing.get(k) != manifest[k]]
        raise ValueError(
            f"{out_dir} holds shards of a different request (it differs in: "
            f"{', '.join(_MANIFEST_NAMES.get(k, k) for k in changed)}); write to a new directory, "
            "or delete this one to start over."
        )


def _plan(model: ConditionalFlow, n_per_class: Any, rows_per_shard: int, out_dir: Any) -> list:
    counts = class_counts(n_per_class, model.num_classes)
    check_count_on_disk(
        sum(counts.values()),  # before the plan, which holds one entry per shard
        math.prod(model.event_shape),  # about one byte per value once encoded
        out_dir,
        "n_per_class",
        "ask for fewer rows, or write the shards where there is more free space.",
        shown=n_per_class,
    )
    return plan_shards(counts, rows_per_shard)


def write_synthetic_shards(
    ds: datasets.Dataset,
    model: ConditionalFlow,
    out_dir: str | os.PathLike,
    n_per_class: int | Mapping[int, int] | Sequence[int],
    image_column: str = "image",
    label_column: str = "label",
    seed: int = 0,
    temperature: float = 0.8,
    batch_size: int = 256,
    filter_threshold: float | None = None,
    rows_per_shard: int = 10_000,
    process_index: int | None = None,
    num_processes: int | None = None,
    progress: bool = True,
) -> list[Path]:
    """Generate synthetic rows like ``ds``'s and write this process's shards to ``out_dir``.

    Args:
        ds: reference dataset: its ``Features`` (and first image, for the layout) are copied.
        model: a trained class-conditional image flow; it samples on its own device, so move it
            to the process's device first (``model.to(accelerator.device)``).
        out_dir: directory of the shards and their manifest (created).
        n_per_class: rows per class: an int, ``{class: n}`` or a list.
        image_column, label_column, temperature, batch_size, filter_threshold: as in
            :func:`flowaug.hf.augment_dataset`.
        seed: seed of the whole set; shard ``i`` uses ``derive_seed(seed, i)``.
        rows_per_shard: rows per Parquet file (the unit of work and of resumption).
        process_index, num_processes: this process's share (default: ``torch.distributed``'s
            when initialized, else ``accelerate.PartialState``'s); progress: a bar on process 0.

    Returns:
        The shard files of this process (written now or found complete from an earlier run);
        :func:`load_synthetic_shards` reads the set back when every process is done.

    Example:
        >>> write_synthetic_shards(ds, model, "synthetic", n_per_class=10_000)  # doctest: +SKIP
    """
    ds = check_dataset(ds).with_format(None)
    model = check_conditional_model(model)
    if hasattr(model, "sample_frame") or len(model.event_shape) != 3:
        raise ValueError(
            "write_synthetic_shards is for image models; for tables, "
            "flowaug.hf.augment_dataset or TabularFlow.sample_frame generate millions of rows "
            "in one process."
        )
    check_columns(ds.features, image_column, label_column, model.num_classes)
    rank, world = _process_layout(process_index, num_processes)
    plan = _plan(model, n_per_class, rows_per_shard, out_dir)
    codec = ImageCodec.of(ds, image_column, model.event_shape)
    out = _shard_dir(out_dir)
    sampling = (check_temperature(temperature), int(batch_size), filter_threshold)
    rows = RowGenerator(model, codec, flagged(ds.features), image_column, label_column, *sampling)
    _write_manifest(out, rows, int(seed), plan)
    mine = [i for i in range(len(plan)) if i % world == rank]
    bar = tqdm(mine, desc=f"flowaug: shards (process {rank})", disable=not progress or rank != 0)
    for i in bar:
        _write_shard(rows, plan[i], derive_seed(int(seed), i), _shard_path(out, i))
    return [_shard_path(out, i) for i in mine]


def load_synthetic_shards(out_dir: str | os.PathLike, progress: bool = True) -> datasets.Dataset:
    """Read a complete shard directory back as one ``datasets.Dataset`` (shard order).

    Raises ``FileNotFoundError`` naming the missing shards when a run has not finished;
    ``progress`` shows datasets' progress bar while it reads the files.
    """
    out = Path(out_dir)
    path = out / MANIFEST
    if not path.exists():
        raise FileNotFoundError(
            f"{out} has no {MANIFEST}; it is not a directory written by write_synthetic_shards."
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format") != _FORMAT:
        raise ValueError(
            f"{path} has format {manifest.get('format')!r}; this flowaug reads format {_FORMAT}."
        )
    files = [_shard_path(out, i) for i in range(len(manifest["shards"]))]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(files)} shards are missing in {out} ({', '.join(missing[:5])}"
            f"{', ...' if len(missing) > 5 else ''}); run write_synthetic_shards again with the "
            "same arguments to finish them."
        )
    sizes = [sum(shard.values()) for shard in manifest["shards"]]
    damage = [(f, _shard_damage(f, n)) for f, n in zip(files, sizes, strict=True)]
    damaged = [f"{f.name} {why}" for f, why in damage if why is not None]
    if damaged:
        raise ValueError(
            f"{len(damaged)} of {len(files)} shards in {out} are damaged ({'; '.join(damaged[:3])}"
            f"{'; ...' if len(damaged) > 3 else ''}); run write_synthetic_shards (or `flowaug "
            "generate`) again with the same arguments to write them again."
        )
    features = Features.from_dict(manifest["features"])
    if not files:
        return no_rows(features)
    with progress_bars(progress):
        return datasets.Dataset.from_parquet([str(f) for f in files], features=features)
