"""Sampling: level codes, seeds, batched generation, the quality filter and SyntheticBank."""

from __future__ import annotations

import doctest
import pickle

import pytest
import torch

import flowaug.sampling.bank
import flowaug.sampling.generation
from flowaug import Glow, SyntheticBank
from flowaug.pixels import from_codes, image_to_model, model_to_image, to_codes
from flowaug.sampling import (
    GenerationStats,
    class_counts,
    generate,
    iter_synthetic,
    posterior_filter,
    sample_per_class,
)


# --- conversions ------------------------------------------------------------------------------
@pytest.mark.parametrize("levels", [2, 17, 256])
def test_codes_round_trip_on_the_grid(levels):
    k = torch.arange(levels, dtype=torch.long)
    grid = from_codes(to_codes((k + 0.5) / levels, levels), levels)
    assert torch.allclose(grid, k.float() / (levels - 1))
    # image values on the grid map to bin centres and back to themselves
    assert torch.equal(model_to_image(image_to_model(grid, levels), levels), grid)


def test_to_codes_dtype_and_clamp():
    x = torch.tensor([-0.5, 0.0, 0.999, 1.0, 2.0])
    codes = to_codes(x, 17)
    assert codes.dtype == torch.uint8
    assert codes.tolist() == [0, 0, 16, 16, 16]
    assert to_codes(x, 1000).dtype == torch.int16


def test_from_codes_uint8_spans_0_to_255():
    codes = torch.tensor([0, 8, 16], dtype=torch.uint8)
    assert from_codes(codes, 17, torch.uint8).tolist() == [0, 128, 255]
    full = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(from_codes(full, 256, torch.uint8), full)


# --- counts -----------------------------------------------------------------------------------
def test_class_counts_forms():
    assert class_counts(3, 2) == {0: 3, 1: 3}
    assert class_counts({1: 5}, 3) == {1: 5}
    assert class_counts([1, 2, 3], 3) == {0: 1, 1: 2, 2: 3}


@pytest.mark.parametrize(
    "value,match",
    [
        ({10: 1}, r"names class 10, outside \[0, 9\]"),
        ({0: -1}, "must be >= 0"),
        ([1, 2], "has 2 counts for a 10-class model"),
        ("many", "must be an int"),
        (True, "must be an int"),
    ],
)
def test_class_counts_errors(value, match):
    with pytest.raises((ValueError, TypeError), match=match):
        class_counts(value, 10)


# --- generation -------------------------------------------------------------------------------
def test_generate_restores_mode_and_is_deterministic(model):
    model.train()
    try:
        y = torch.arange(20) % 10
        a = generate(model, y, 0.7, torch.Generator().manual_seed(1), batch_size=7)
        b = generate(model, y, 0.7, torch.Generator().manual_seed(1), batch_size=7)
        assert model.training
    finally:
        model.eval()
    assert a.shape == (20, 1, 8, 8) and not a.requires_grad
    assert torch.equal(a, b)
    assert ((a >= 0) & (a <= 1)).all()


def test_temperature_zero_gives_the_class_mode(model):
    x = generate(model, torch.tensor([3, 3, 3]), temperature=0.0)
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


def test_sample_per_class_sorted_counts_and_seeds(model):
    x, y = sample_per_class(model, {2: 3, 5: 4}, seed=0)
    assert y.tolist() == [2, 2, 2, 5, 5, 5, 5]
    assert x.shape == (7, 1, 8, 8)
    x2, _ = sample_per_class(model, {2: 3, 5: 4}, seed=0)
    x3, _ = sample_per_class(model, {2: 3, 5: 4}, seed=1)
    assert torch.equal(x, x2)
    assert not torch.equal(x, x3)


def test_errors_name_the_argument(model):
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
        generate(model, torch.tensor([0]), temperature=-1.0)
    with pytest.raises(ValueError, match=r"filter_threshold must be in \[0, 1\)"):
        sample_per_class(model, 1, filter_threshold=1.5)
    with pytest.raises(TypeError, match="model must be a flowaug model"):
        generate(torch.nn.Linear(2, 2), torch.tensor([0]))
    unconditional = Glow((1, 8, 8), None, depth=1, hidden=8)
    with pytest.raises(ValueError, match="unconditional"):
        SyntheticBank(unconditional, 2)


# --- quality filter ---------------------------------------------------------------------------
def test_filter_keeps_only_confident_samples(digits_glow):
    model, _, _ = digits_glow
    stats = GenerationStats()
    counts = {0: 20, 7: 20}
    g = torch.Generator().manual_seed(0)
    batches = list(iter_synthetic(model, counts, 1.0, g, 64, filter_threshold=0.99, stats=stats))
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert sorted(y.tolist()) == [0] * 20 + [7] * 20
    seen = image_to_model(model_to_image(x, 17), 17)
    keep, post = posterior_filter(model, seen, y, 0.99)
    assert keep.all() and (post >= 0.99).all()
    assert stats.accepted == {0: 20, 7: 20}
    assert all(stats.drawn[c] >= 20 for c in counts)


def test_unreachable_threshold_warns_and_completes(model):
    # a fresh Glow ignores the class (zero-initialized conditioning): every posterior is 1/10
    flat = Glow((1, 8, 8), 10, depth=1, hidden=8, levels=17).eval()
    stats = GenerationStats()
    with pytest.warns(UserWarning, match="reached filter_threshold=0.5"):
        batches = list(iter_synthetic(flat, {1: 3}, filter_threshold=0.5, stats=stats))
    assert sum(len(b[1]) for b in batches) == 3
    assert stats.unfiltered == {1: 3}
    assert stats.accepted == {1: 0}
    assert stats.drawn[1] == 20 * 3


# --- bank -------------------------------------------------------------------------------------
def test_bank_layout_and_shared_memory(model):
    bank = SyntheticBank(model, n_per_class=6, seed=0)
    assert bank.codes.shape == (10, 6, 1, 8, 8)
    assert bank.codes.dtype == torch.uint8 and bank.codes.is_shared()
    assert int(bank.codes.max()) <= 16
    assert len(bank) == 60


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8])
def test_bank_draws_have_dtype_shape_and_range(model, dtype):
    bank = SyntheticBank(model, n_per_class=4, seed=0)
    one = bank.draw(3, torch.Generator().manual_seed(0), dtype=dtype)
    many = bank.draw_batch(torch.tensor([1, 2, 2]), dtype=dtype)
    assert one.shape == (1, 8, 8) and many.shape == (3, 1, 8, 8)
    assert one.dtype == dtype and many.dtype == dtype
    top = 255 if dtype == torch.uint8 else 1.0
    assert 0 <= float(one.min()) and float(many.max()) <= top


def test_bank_get_is_a_copy(model):
    bank = SyntheticBank(model, n_per_class=2, seed=0)
    before = bank.get(4, 1).clone()
    bank.get(4, 1).fill_(0.5)
    assert torch.equal(bank.get(4, 1), before)


def test_bank_is_deterministic_for_a_seed(model):
    a = SyntheticBank(model, n_per_class=3, seed=5)
    b = SyntheticBank(model, n_per_class=3, seed=5)
    c = SyntheticBank(model, n_per_class=3, seed=6)
    assert torch.equal(a.codes, b.codes)
    assert not torch.equal(a.codes, c.codes)


def test_bank_refresh_in_place_every_k_epochs(model):
    bank = SyntheticBank(model, n_per_class=3, seed=0, refresh_every=2)
    codes = bank.codes
    first = codes.clone()
    bank.get(0, 0)  # fills the per-process cache
    assert not bank.refresh(1)
    assert torch.equal(codes, first)
    assert bank.refresh(2)
    assert bank.codes is codes  # same shared storage: workers see the new samples
    assert not torch.equal(codes, first)
    assert int(bank.version) == 1
    assert torch.equal(bank.get(0, 0), from_codes(codes[0, 0], 17))  # cache was invalidated
    assert not bank.refresh(3)
    same = SyntheticBank(model, n_per_class=3, seed=0, refresh_every=2)
    same.refresh(2)
    assert torch.equal(same.codes, codes)  # depends on (seed, epoch block) only


def test_bank_pickles_small(model):
    bank = SyntheticBank(model, n_per_class=8, seed=0)
    bank.get(0, 0)
    data = pickle.dumps(bank)
    copy = pickle.loads(data)
    assert torch.equal(copy.codes, bank.codes)
    assert torch.equal(copy.get(2, 3), bank.get(2, 3))
    weights = sum(p.numel() * 4 for p in model.parameters())
    assert len(data) < weights + bank.codes.numel() + 100_000


def test_bank_rejects_unknown_classes(model):
    bank = SyntheticBank(model, n_per_class=2, seed=0)
    with pytest.raises(ValueError, match=r"label 10 is outside \[0, 9\]"):
        bank.get(10, 0)
    with pytest.raises(ValueError, match=r"label -1 is outside"):
        bank.draw_batch(torch.tensor([0, -1]))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(n_per_class=0), "n_per_class must be >= 1"),
        (dict(n_per_class=2.5), "n_per_class must be an int"),
        (dict(refresh_every=0), "refresh_every must be an int >= 1"),
        (dict(temperature="hot"), "temperature must be a number"),
    ],
)
def test_bank_argument_errors(model, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SyntheticBank(model, **{"n_per_class": 2, **kwargs})


def test_filtered_bank_preserves_labels(digits_glow):
    model, _, _ = digits_glow
    bank = SyntheticBank(model, n_per_class=20, seed=0, filter_threshold=0.9)
    x = from_codes(bank.codes, 17).reshape(-1, 1, 8, 8)
    y = torch.arange(10).repeat_interleave(20)
    post = model.classify(image_to_model(x, 17))
    assert (post.gather(1, y[:, None]) >= 0.9).all()
    assert all(0 < r <= 1 for r in bank.stats.acceptance_rate().values())


def test_unfiltered_samples_mostly_carry_their_label(digits_glow):
    model, _, _ = digits_glow
    bank = SyntheticBank(model, n_per_class=20, seed=1)
    x = from_codes(bank.codes, 17).reshape(-1, 1, 8, 8)
    y = torch.arange(10).repeat_interleave(20)
    agree = (model.classify(image_to_model(x, 17)).argmax(1) == y).float().mean()
    assert agree >= 0.9


@pytest.mark.parametrize("module", [flowaug.sampling.generation, flowaug.sampling.bank])
def test_docstring_examples_run(module):
    assert doctest.testmod(module).failed == 0
