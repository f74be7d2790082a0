"""Dequantization and image conversions."""

from __future__ import annotations

import pytest
import torch

from flowaug.pixels import dequantize, from_unit_float, quantize, to_unit_float


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int64])
@pytest.mark.parametrize("levels", [2, 17, 256])
def test_dequantize_then_quantize_gives_back_the_levels(dtype, levels):
    x = torch.randint(0, levels, (4, 1, 5, 5)).to(dtype)
    x01 = dequantize(x, levels, generator=torch.Generator().manual_seed(0))
    assert x01.dtype == torch.float32 and x01.min() >= 0 and x01.max() < 1
    assert torch.equal(quantize(x01, levels), x.long())


def test_dequantize_noise_is_fresh_and_seeded():
    x = torch.zeros(1000, dtype=torch.long)
    a = dequantize(x, 17, generator=torch.Generator().manual_seed(1))
    b = dequantize(x, 17, generator=torch.Generator().manual_seed(1))
    c = dequantize(x, 17, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert abs(a.mean().item() * 17 - 0.5) < 0.05  # uniform within the bin


@pytest.mark.parametrize(
    "x,levels,error,match",
    [
        (torch.tensor([0, 17]), 17, ValueError, r"outside \[0, 16\]"),
        (torch.tensor([-1, 0]), 17, ValueError, "outside"),
        (torch.tensor([0.5]), 17, TypeError, "integer levels"),
        (torch.tensor([0]), 1, ValueError, "levels must be"),
        ([0, 1], 17, TypeError, "torch.Tensor"),
    ],
)
def test_dequantize_rejects_bad_input(x, levels, error, match):
    with pytest.raises(error, match=match):
        dequantize(x, levels)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_unit_float_round_trip_keeps_dtype(dtype):
    image = torch.randint(0, 256, (3, 4, 4), dtype=torch.uint8)
    like = image if dtype == torch.uint8 else image.to(dtype) / 255
    back = from_unit_float(to_unit_float(like), like)
    assert back.dtype == dtype
    assert torch.allclose(back.double(), like.double(), atol=1e-6)
