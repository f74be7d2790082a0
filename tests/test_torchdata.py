"""SyntheticDataset (deterministic per index) and mix_datasets for plain PyTorch."""

from __future__ import annotations

import doctest
import pickle

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import flowaug.integrations.torchdata
from flowaug import SyntheticDataset
from flowaug.integrations.torchdata import mix_datasets
from flowaug.pixels import image_to_model


def test_layout_and_labels(model):
    ds = SyntheticDataset(model, n_per_class={0: 2, 3: 1, 9: 2}, seed=0)
    assert len(ds) == 5
    assert ds.labels.tolist() == [0, 0, 3, 9, 9]
    image, label = ds[2]
    assert label == 3 and isinstance(label, int)
    assert image.shape == (1, 8, 8) and image.dtype == torch.float32
    assert 0 <= float(image.min()) and float(image.max()) <= 1
    # values sit on the data grid k / 16
    assert torch.equal((image * 16).round() / 16, image)


def test_deterministic_per_index_in_any_order(model):
    ds = SyntheticDataset(model, n_per_class=3, seed=4)
    again = SyntheticDataset(model, n_per_class=3, seed=4)
    other = SyntheticDataset(model, n_per_class=3, seed=5)
    assert torch.equal(ds[7][0], ds[7][0])
    assert torch.equal(ds[7][0], again[7][0])
    assert torch.equal(ds[-1][0], ds[len(ds) - 1][0])
    assert not torch.equal(ds[7][0], other[7][0])
    batch = ds.__getitems__([12, 7, 0])
    for (image, label), i in zip(batch, [12, 7, 0], strict=True):
        single, single_label = ds[i]
        assert label == single_label
        # batched decoding may differ by float rounding: one level at most, on rare pixels
        assert (image - single).abs().max() <= 1 / 16 + 1e-6
        assert (image != single).float().mean() <= 0.05


def test_uint8_and_transform(model):
    ds = SyntheticDataset(model, n_per_class=1, seed=0, dtype=torch.uint8)
    image, _ = ds[0]
    assert image.dtype == torch.uint8 and int(image.max()) <= 255
    flipped = SyntheticDataset(model, n_per_class=1, seed=0, transform=lambda x: x.flip(-1))
    plain = SyntheticDataset(model, n_per_class=1, seed=0)
    assert torch.equal(flipped[0][0], plain[0][0].flip(-1))


def test_dataloader_workers_match_direct_access(model):
    ds = SyntheticDataset(model, n_per_class=2, seed=0)
    loader = DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="fork")
    images = torch.cat([b[0] for b in loader])
    labels = torch.cat([b[1] for b in loader])
    assert labels.tolist() == ds.labels.tolist()
    direct = torch.stack(
        [
            torch.stack([x for x, _ in ds.__getitems__(list(range(s, s + 4)))])
            for s in range(0, 20, 4)
        ]
    ).reshape(20, 1, 8, 8)
    assert torch.equal(images, direct)
    assert len(pickle.dumps(ds)) < 200_000


def test_samples_carry_their_label(digits_glow):
    model, _, _ = digits_glow
    ds = SyntheticDataset(model, n_per_class=10, seed=0)
    images = torch.stack([x for x, _ in ds.__getitems__(list(range(len(ds))))])
    pred = model.classify(image_to_model(images, 17)).argmax(1)
    assert (pred == ds.labels).float().mean() >= 0.9


def test_errors(model):
    ds = SyntheticDataset(model, n_per_class=1)
    with pytest.raises(IndexError, match="index 10 is out of range for a SyntheticDataset of 10"):
        ds[10]
    with pytest.raises(ValueError, match="dtype must be torch.uint8 or a float dtype"):
        SyntheticDataset(model, 1, dtype=torch.int64)
    with pytest.raises(ValueError, match="temperature must be a finite number"):
        SyntheticDataset(model, 1, temperature=float("inf"))


# --- mix_datasets -----------------------------------------------------------------------------
def test_mix_datasets_sizes_and_order(model):
    # items like torchvision datasets give: (image tensor, int label)
    real = [(torch.rand(1, 8, 8), i % 10) for i in range(20)]
    synthetic = SyntheticDataset(model, n_per_class=1, seed=0)
    mixed = mix_datasets(real, synthetic, ratio=0.5, seed=0)
    assert len(mixed) == 30
    assert torch.equal(mixed[3][0], real[3][0])
    picked = mixed.datasets[1].indices
    assert len(set(picked)) == 10  # a subset without repeats while enough are available
    again = mix_datasets(real, synthetic, ratio=0.5, seed=0)
    assert again.datasets[1].indices == picked
    assert mix_datasets(real, synthetic, ratio=0.5, seed=1).datasets[1].indices != picked
    more = mix_datasets(real, synthetic, ratio=2.0)
    assert len(more) == 60 and sorted(set(more.datasets[1].indices)) == list(range(10))
    assert len(mix_datasets(real, synthetic, ratio=0)) == 20
    batch = next(iter(DataLoader(mixed, batch_size=30)))
    assert batch[0].shape == (30, 1, 8, 8)


def test_mix_datasets_collates_with_a_tensor_dataset(model):
    # TensorDataset gives 0-d tensor labels, SyntheticDataset ints: mixed, they still batch
    real = TensorDataset(torch.rand(6, 1, 8, 8), torch.arange(6))
    mixed = mix_datasets(real, SyntheticDataset(model, n_per_class=1, seed=0), ratio=1.0)
    images, labels = next(iter(DataLoader(mixed, batch_size=12)))
    assert images.shape == (12, 1, 8, 8) and labels.dtype == torch.int64 and labels.shape == (12,)
    as_uint8 = TensorDataset(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.arange(4))
    with pytest.raises(TypeError, match=r"build the synthetic set with dtype=torch.uint8"):
        mix_datasets(as_uint8, SyntheticDataset(model, n_per_class=1, seed=0))


def test_mix_datasets_errors(model):
    real = TensorDataset(torch.rand(4, 1, 8, 8), torch.arange(4))
    with pytest.raises(ValueError, match="ratio must be a number >= 0"):
        mix_datasets(real, real, ratio=-1)
    with pytest.raises(TypeError, match="synthetic must be a map-style dataset"):
        mix_datasets(real, iter([1, 2]), ratio=1)
    with pytest.raises(ValueError, match="synthetic is empty"):
        mix_datasets(real, TensorDataset(torch.empty(0)), ratio=1)


def test_docstring_examples_run():
    assert doctest.testmod(flowaug.integrations.torchdata).failed == 0
