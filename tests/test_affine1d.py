"""The 1-D affine flow: positive scale, exact inverse, correct density, ML fit."""

from __future__ import annotations

import math

import pytest
import torch

from flowaug import AffineFlow1D


def _random_flow(num_layers):
    flow = AffineFlow1D(num_layers).double()
    with torch.no_grad():
        flow.log_scale.normal_(0, 0.7)
        flow.shift.normal_(0, 2)
    return flow


@pytest.mark.parametrize("num_layers", [1, 3])
def test_density_is_the_implied_gaussian_and_integrates_to_one(num_layers):
    flow = _random_flow(num_layers)
    mean, std = flow.mean.item(), flow.std.item()
    grid = torch.linspace(mean - 10 * std, mean + 10 * std, 20001, dtype=torch.float64)
    density = flow.log_prob(grid).exp()
    assert abs(torch.trapezoid(density, grid).item() - 1) < 1e-6
    gaussian = torch.distributions.Normal(mean, std).log_prob(grid)
    assert torch.allclose(flow.log_prob(grid), gaussian)


def test_scale_stays_positive_under_any_parameters():
    flow = AffineFlow1D(2)
    with torch.no_grad():
        flow.log_scale.fill_(-30.0)
    assert flow.std > 0
    assert torch.isfinite(flow.log_prob(torch.tensor([0.0])))


def test_maximum_likelihood_recovers_mean_and_std():
    data = torch.randn(4000, generator=torch.Generator().manual_seed(0)) * 2.5 + 4.0
    flow = AffineFlow1D(2)
    opt = torch.optim.Adam(flow.parameters(), lr=0.05)
    for _ in range(600):
        loss = -flow.log_prob(data).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert math.isclose(flow.mean.item(), data.mean().item(), abs_tol=0.05)
    assert math.isclose(flow.std.item(), data.std().item(), rel_tol=0.02)
    samples = flow.sample(20000, generator=torch.Generator().manual_seed(1))
    assert math.isclose(samples.std().item(), data.std().item(), rel_tol=0.05)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="num_layers"):
        AffineFlow1D(0)
    with pytest.raises(TypeError, match="float tensor"):
        AffineFlow1D()(torch.tensor([1, 2]))
