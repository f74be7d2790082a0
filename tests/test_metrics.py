"""Metrics: nearest neighbours, memorization report, fidelity helpers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from flowaug.metrics import (
    as_matrix,
    fidelity_report,
    knn_precision_recall,
    label_agreement,
    memorization_report,
    mmd_rbf,
    moment_gaps,
    nearest_neighbors,
    summary,
)
from flowaug.pixels import image_to_model


def gaussian(n, d=5, shift=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
@pytest.mark.parametrize("k", [1, 3])
def test_nearest_neighbors_match_brute_force(chunk_size, k):
    q, r = gaussian(23, seed=1), gaussian(31, seed=2)
    dist, idx = nearest_neighbors(q, r, chunk_size=chunk_size, k=k)
    full = ((q[:, None, :] - r[None, :, :]) ** 2).sum(-1).sqrt()
    expected, expected_idx = full.sort(dim=1)
    assert torch.allclose(dist, expected[:, k - 1])
    assert torch.equal(idx, expected_idx[:, k - 1])


def test_exclude_self_skips_only_the_row_itself():
    x = gaussian(10)
    x[3] = x[7]  # a duplicate elsewhere still counts, at distance 0
    dist, idx = nearest_neighbors(x, x, chunk_size=4, exclude_self=True)
    assert dist[3] == 0 and idx[3] == 7
    assert (dist[[0, 1, 2, 4]] > 0).all()
    assert (idx != torch.arange(10)).all()


def test_memorization_flags_copies():
    train = gaussian(200)
    copies = memorization_report(train[:50], train, baseline_size=None)
    assert copies["share_exact_copies"] == 1.0
    assert copies["share_near_copies"] == 1.0
    assert copies["share_below_train_p05"] == 1.0
    fresh = memorization_report(gaussian(100, seed=9), train, threshold=0.5)
    assert fresh["share_exact_copies"] == 0.0
    assert fresh["share_near_copies"] < 0.1
    assert 0.5 < fresh["ratio"]["median"] < 2.0
    json.dumps(fresh)  # the report is JSON-serializable
    assert fresh["n_synthetic"] == 100 and fresh["n_train"] == 200 and fresh["dim"] == 5


def test_memorization_with_repeated_training_rows():
    # an oversampled table repeats rows: copies must still count as copies
    train = gaussian(100)
    report = memorization_report(train[:10], torch.cat([train, train]), baseline_size=None)
    assert report["share_exact_copies"] == 1.0 and report["share_near_copies"] == 1.0
    assert report["n_train"] == 200 and np.isfinite(report["train_nn"]["median"])
    json.loads(json.dumps(report, allow_nan=False))  # strict JSON: no NaN or Infinity


def test_memorization_near_copies_and_images():
    train = torch.rand(100, 1, 8, 8)
    near = train[:40] + 0.001 * torch.randn(40, 1, 8, 8)
    report = memorization_report(near, train, threshold=0.5, chunk_size=16)
    assert report["share_near_copies"] == 1.0 and report["share_exact_copies"] == 0.0
    assert report["dim"] == 64


def test_memorization_baseline_subsample_is_seeded():
    train = gaussian(300)
    a = memorization_report(gaussian(20, seed=3), train, baseline_size=50, seed=1)
    b = memorization_report(gaussian(20, seed=3), train, baseline_size=50, seed=1)
    assert a == b


@pytest.mark.parametrize(
    "synthetic,train,match",
    [
        (gaussian(3, 4), gaussian(5, 5), "query has 4 dimensions but reference has 5"),
        (gaussian(3), gaussian(1), "train needs at least 2 distinct rows"),
        (gaussian(3), gaussian(1).repeat(4, 1), "train needs at least 2 distinct rows"),
        (gaussian(0), gaussian(4), "synthetic has no rows"),
        (torch.tensor([[float("nan")] * 5]), gaussian(4), "NaN or inf"),
        (np.array([["a"] * 5]), gaussian(4), "must hold numbers"),
        ("rows", gaussian(4), "must be a tensor, an array or a DataFrame"),
    ],
)
def test_memorization_errors(synthetic, train, match):
    with pytest.raises((ValueError, TypeError), match=match):
        memorization_report(synthetic, train)


def test_mmd_separates_distributions():
    same = mmd_rbf(gaussian(300, seed=1), gaussian(300, seed=2))
    shifted = mmd_rbf(gaussian(300, seed=1), gaussian(300, shift=1.0, seed=2))
    assert abs(same) < 0.01
    assert shifted > 10 * max(abs(same), 1e-3)


def test_precision_recall_extremes():
    x = gaussian(100)
    assert knn_precision_recall(x, x.clone(), k=3) == {"precision": 1.0, "recall": 1.0, "k": 3}
    far = knn_precision_recall(x, gaussian(100, shift=100.0), k=3)
    assert far["precision"] == 0.0 and far["recall"] == 0.0


def test_moment_gaps_and_report():
    x = gaussian(200)
    gaps = moment_gaps(x, x)
    assert gaps == {"mean_gap": 0.0, "std_gap": 0.0, "corr_gap": 0.0}
    assert moment_gaps(x, x + 2.0)["mean_gap"] == pytest.approx(2.0)
    report = fidelity_report(x, gaussian(150, seed=4))
    assert set(report) >= {"mmd_rbf", "precision", "recall", "mean_gap", "std_gap", "corr_gap"}
    json.dumps(report)


def test_generic_inputs():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0, 1, 0]})
    assert as_matrix(frame).shape == (3, 2)
    assert as_matrix(np.zeros((4, 2, 3))).shape == (4, 6)
    stats = summary(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert stats["median"] == 2.5 and stats["min"] == 1.0 and stats["max"] == 4.0


def test_label_agreement_of_the_flow(digits_glow):
    model, x, y = digits_glow
    real = image_to_model(x[:200].float() / 16, 17)
    assert label_agreement(model, real, y[:200], batch_size=64) >= 0.9
    assert label_agreement(model, real, (y[:200] + 1) % 10) <= 0.1
    with pytest.raises(ValueError, match="y has 3 labels for 200 samples"):
        label_agreement(model, real, y[:3])
