"""Synthetic shards: the same rows for any number of processes, resumable, read back by datasets."""

from __future__ import annotations

import shutil
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import pytest
import torch
from conftest import torchrun_two_cpu
from test_distributed import launch_cpu_ranks

import flowaug
from flowaug.integrations.hf.shards import (
    MANIFEST,
    load_synthetic_shards,
    plan_shards,
    write_synthetic_shards,
)

NAMES = [str(d) for d in range(10)]


pytestmark = pytest.mark.usefixtures("quiet_datasets")


def reference(kind: str) -> datasets.Dataset:
    """Ten 8x8 grey images, as an ``Image`` column or a float ``Array3D`` column."""
    rng = np.random.default_rng(0)
    arrays = (rng.random((10, 8, 8)) * 255).astype(np.uint8)
    label = datasets.ClassLabel(names=NAMES)
    if kind == "image":
        images = [PIL.Image.fromarray(a, mode="L") for a in arrays]
        features = datasets.Features({"image": datasets.Image(), "label": label})
    else:
        images = (arrays[:, None] / 255).astype(np.float32)
        features = datasets.Features(
            {"image": datasets.Array3D((1, 8, 8), "float32"), "label": label}
        )
    return datasets.Dataset.from_dict({"image": images, "label": list(range(10))}, features)


def rows(ds: datasets.Dataset) -> list[tuple[int, bytes]]:
    return [(r["label"], np.asarray(r["image"]).tobytes()) for r in ds]


def write_all(ds, model, out, num_processes: int, **kw) -> None:
    for rank in range(num_processes):
        write_synthetic_shards(
            ds, model, out, process_index=rank, num_processes=num_processes, progress=False, **kw
        )


@pytest.mark.parametrize(
    "counts,size", [({0: 3, 1: 2}, 2), ({0: 5}, 5), ({0: 0, 1: 4, 2: 1}, 3), ({}, 4)]
)
def test_plan_covers_every_row_once_in_full_shards(counts, size):
    plan = plan_shards(counts, size)
    for cls, n in counts.items():
        assert sum(shard.get(cls, 0) for shard in plan) == n
    sizes = [sum(shard.values()) for shard in plan]
    assert all(s == size for s in sizes[:-1]) and all(0 < s <= size for s in sizes)


@pytest.mark.parametrize("kind", ["image", "array"])
@pytest.mark.parametrize("num_processes", [2, 3])
def test_any_number_of_processes_gives_the_same_rows(model, tmp_path, kind, num_processes):
    ds = reference(kind)
    kw = dict(n_per_class=[3, 0, 5, 1, 0, 0, 2, 0, 0, 4], rows_per_shard=4, seed=7)
    write_all(ds, model, tmp_path / "one", 1, **kw)
    write_all(ds, model, tmp_path / "many", num_processes, **kw)
    one, many = load_synthetic_shards(tmp_path / "one"), load_synthetic_shards(tmp_path / "many")
    expected = datasets.Features({**ds.features, "is_synthetic": datasets.Value("bool")})
    assert one.features == expected
    assert many.features == one.features
    assert rows(many) == rows(one)
    assert one["label"] == [0] * 3 + [2] * 5 + [3] + [6] * 2 + [9] * 4
    assert all(one["is_synthetic"])
    # another seed gives other images
    write_all(ds, model, tmp_path / "other", 1, **(kw | {"seed": 8}))
    assert rows(load_synthetic_shards(tmp_path / "other")) != rows(one)


def test_a_rerun_writes_only_the_missing_shards(model, tmp_path):
    ds = reference("image")
    kw = dict(n_per_class=2, rows_per_shard=5, seed=0)
    write_all(ds, model, tmp_path, 1, **kw)
    before = rows(load_synthetic_shards(tmp_path))
    files = sorted(tmp_path.glob("shard-*.parquet"))
    assert len(files) == 4
    files[1].unlink()
    with pytest.raises(FileNotFoundError, match="shard-00001.parquet"):
        load_synthetic_shards(tmp_path)
    stamps = {f: f.stat().st_mtime_ns for f in files if f != files[1]}
    write_all(ds, model, tmp_path, 2, **kw)  # resumable with another process count too
    assert {f: f.stat().st_mtime_ns for f in stamps} == stamps
    assert rows(load_synthetic_shards(tmp_path)) == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_different_request_in_the_same_directory_is_refused(model, tmp_path):
    ds = reference("image")
    write_all(ds, model, tmp_path, 1, n_per_class=1, seed=0)
    with pytest.raises(ValueError, match=r"different request.*seed"):
        write_all(ds, model, tmp_path, 1, n_per_class=1, seed=1)
    with pytest.raises(ValueError, match=r"differs in: n_per_class or rows_per_shard\)"):
        write_all(ds, model, tmp_path, 1, n_per_class=2, seed=0)


def test_a_folder_of_something_else_is_refused(model, tmp_path):
    (tmp_path / "config.json").write_text("{}")  # e.g. a model folder
    with pytest.raises(ValueError, match="is not empty and holds no synthetic shards"):
        write_all(reference("image"), model, tmp_path, 1, n_per_class=1)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["config.json"]


@pytest.mark.parametrize(
    "kw,error,match",
    [
        (dict(rows_per_shard=0), ValueError, "rows_per_shard"),
        (dict(process_index=2, num_processes=2), ValueError, "process_index"),
        (dict(process_index=0), ValueError, "both process_index and num_processes"),
        (dict(image_column="pixels"), ValueError, "image_column='pixels'"),
    ],
)
def test_bad_arguments_get_a_clear_error(model, tmp_path, kw, error, match):
    with pytest.raises(error, match=match):
        write_synthetic_shards(reference("image"), model, tmp_path, n_per_class=1, **kw)


def test_tabular_models_are_pointed_elsewhere(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"a": [0.1, 0.5, 0.9, 0.3], "label": [0, 1, 0, 1]})
    flow = flowaug.TabularFlow.from_frame(frame, label="label", depth=1, hidden=4)
    ds = datasets.Dataset.from_pandas(frame)
    with pytest.raises(ValueError, match="image models"):
        write_synthetic_shards(ds, flow, tmp_path, n_per_class=1, image_column="a")


def test_load_needs_a_shard_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=MANIFEST):
        load_synthetic_shards(tmp_path)


def _rank_writes(model_dir: str, out_dir: str) -> None:
    """One rank of a launched job: process index and count come from accelerate."""
    torch.set_num_threads(1)
    model = flowaug.load(model_dir)
    written = write_synthetic_shards(
        reference("image"), model, out_dir, n_per_class=3, rows_per_shard=4, progress=False
    )
    rank = torch.distributed.get_rank()
    (Path(out_dir).parent / f"rank{rank}.txt").write_text(" ".join(p.name for p in written))


def test_two_launched_ranks_split_the_shards(model, tmp_path):
    model.save_pretrained(tmp_path / "model")
    launch_cpu_ranks(_rank_writes, args=(str(tmp_path / "model"), str(tmp_path / "two")))
    write_all(
        reference("image"),
        flowaug.load(tmp_path / "model"),
        tmp_path / "one",
        1,
        n_per_class=3,
        rows_per_shard=4,
    )
    # each rank wrote its own half: process index and count really came from the launcher
    assert (tmp_path / "rank0.txt").read_text().split() == [
        f"shard-0000{i}.parquet" for i in (0, 2, 4, 6)
    ]
    assert (tmp_path / "rank1.txt").read_text().split() == [
        f"shard-0000{i}.parquet" for i in (1, 3, 5, 7)
    ]
    assert rows(load_synthetic_shards(tmp_path / "two")) == rows(
        load_synthetic_shards(tmp_path / "one")
    )


@pytest.mark.slow
def test_flowaug_generate_under_torchrun(model, tmp_path):
    import os
    import subprocess
    import sys

    model.save_pretrained(tmp_path / "model")
    reference("image").save_to_disk(str(tmp_path / "like"))
    args = [str(tmp_path / "model"), "--like", str(tmp_path / "like"), "--n-per-class", "5"]
    args += ["--rows-per-shard", "8", "--no-progress"]
    run = ["-m", "flowaug", "generate", *args, "--out", str(tmp_path / "two")]
    done = torchrun_two_cpu(*run, cpu_env=False, capture_output=True, text=True)
    assert "(2 process(es), 4 shards from this one" in done.stdout  # rank 0: 4 of 7 shards
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one = [sys.executable, "-m", "flowaug", "generate", *args, "--out", str(tmp_path / "one")]
    subprocess.run(one, env=env, check=True, timeout=600)
    assert rows(load_synthetic_shards(tmp_path / "two")) == rows(
        load_synthetic_shards(tmp_path / "one")
    )


@pytest.mark.parametrize("damage", ["flip", "truncate", "swap", "truncate-unhashed"])
def test_a_corrupted_shard_is_detected_and_a_rerun_regenerates_it(model, tmp_path, damage):
    ds = reference("image")
    kw = dict(n_per_class=2, rows_per_shard=5, seed=0)
    write_all(ds, model, tmp_path, 1, **kw)
    before = rows(load_synthetic_shards(tmp_path))
    files = sorted(tmp_path.glob("shard-*.parquet"))
    data = bytearray(files[1].read_bytes())
    if damage == "flip":  # one bit, inside the data pages: the file still parses
        data[len(data) // 3] ^= 0x01
        files[1].write_bytes(bytes(data))
    elif damage.startswith("truncate"):
        files[1].write_bytes(bytes(data[: len(data) // 2]))
        if damage == "truncate-unhashed":  # as written by a flowaug without shard hashes
            files[1].with_suffix(".sha256").unlink()
    else:  # a complete shard, but another one's
        shutil.copyfile(files[2], files[1])
    with pytest.raises(ValueError, match=r"shard-00001\.parquet .*run write_synthetic_shards"):
        load_synthetic_shards(tmp_path)
    stamps = {f: f.stat().st_mtime_ns for f in files if f != files[1]}
    with pytest.warns(UserWarning, match=r"shard-00001\.parquet .*; writing it again"):
        write_all(ds, model, tmp_path, 1, **kw)
    assert {f: f.stat().st_mtime_ns for f in stamps} == stamps  # only the damaged one again
    assert rows(load_synthetic_shards(tmp_path)) == before
