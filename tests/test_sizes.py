"""Absurd sampling sizes are refused up front, with the argument and a byte estimate; large
table requests are decoded in chunks and give the same rows as one pass."""

from __future__ import annotations

import datasets
import numpy as np
import pandas as pd
import PIL.Image
import pytest
import torch
from sklearn.datasets import load_iris

import flowaug.tabular.frames as tabular_module
from flowaug import FlowAugment, SyntheticBank, TabularFlow
from flowaug.hf import augment_dataset
from flowaug.integrations.hf.shards import write_synthetic_shards

HUGE = 10**13


@pytest.fixture(scope="module")
def iris_flow():
    torch.manual_seed(0)
    frame = load_iris(as_frame=True).frame
    frame["target"] = frame["target"].map({0: "setosa", 1: "versicolor", 2: "virginica"})
    return TabularFlow.from_frame(frame, label="target", depth=1, hidden=8).eval(), frame


def _refused(match: str):
    return pytest.raises(ValueError, match=match)


def test_model_sample_refuses_a_huge_num_samples_before_allocating(model):
    with _refused(rf"num_samples={HUGE} \(1\.0 KiB per sample\) needs about 9\.1 PiB"):
        model.sample(3, num_samples=HUGE)
    unconditional = TabularFlow(4, 0, depth=1, hidden=4)
    with _refused("num_samples=.* needs about .* more than this machine's"):
        unconditional.sample(None, num_samples=HUGE)


@pytest.mark.parametrize("request_", [HUGE, {"setosa": HUGE}])
def test_sample_frame_refuses_a_huge_n_per_class(iris_flow, request_):
    flow, _ = iris_flow
    with _refused(r"n_per_class=.* samples, .* per sample\) needs about .*iB, more than"):
        flow.sample_frame(request_)


def test_sample_frame_in_chunks_gives_the_rows_of_one_pass(iris_flow, monkeypatch):
    flow, _ = iris_flow
    whole = flow.sample_frame({"setosa": 20, "virginica": 13}, seed=3)
    monkeypatch.setattr(tabular_module, "FRAME_CHUNK_ROWS", 7)
    chunked = flow.sample_frame({"setosa": 20, "virginica": 13}, seed=3)
    pd.testing.assert_frame_equal(whole, chunked)
    assert chunked["target"].tolist() == ["setosa"] * 20 + ["virginica"] * 13


def test_a_huge_bank_is_refused_naming_the_argument(model):
    with _refused(rf"n_per_class={HUGE} \({10 * HUGE} samples, .* needs about"):
        SyntheticBank(model, n_per_class=HUGE)
    with _refused(rf"bank_size={HUGE} \(.* needs about .* more than this machine's"):
        FlowAugment(model, mode="resample", bank=True, bank_size=HUGE)


def _images() -> datasets.Dataset:
    arrays = (np.random.default_rng(0).random((10, 8, 8)) * 255).astype(np.uint8)
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=list("0123456789"))}
    )
    images = [PIL.Image.fromarray(a, mode="L") for a in arrays]
    return datasets.Dataset.from_dict({"image": images, "label": list(range(10))}, features)


def test_augment_dataset_and_shards_refuse_more_rows_than_the_disk_holds(model, tmp_path):
    ds = _images()
    with _refused(rf"n_per_class={HUGE} .* needs about .* of disk, more than the .* free"):
        augment_dataset(ds, model, n_per_class=HUGE, progress=False, cache_dir=str(tmp_path))
    with _refused(rf"n_per_class={HUGE} .* of disk"):
        write_synthetic_shards(ds, model, tmp_path / "shards", HUGE, process_index=0,
                               num_processes=1, progress=False)
    assert not (tmp_path / "shards" / "flowaug_shards.json").exists()


def test_augment_dataset_of_a_table_refuses_a_huge_n_per_class(iris_flow):
    flow, frame = iris_flow
    ds = datasets.Dataset.from_pandas(frame)
    with _refused("n_per_class=.* needs about"):
        augment_dataset(ds, flow, label_column="target", n_per_class=HUGE, progress=False)
