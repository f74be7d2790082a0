"""Rational-quadratic spline and spline coupling: bijection, log-det, identity tails."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian

from flowaug.flows.spline import SplineCoupling, _softplus, rational_quadratic_spline

BOUND = 3.0


def random_params(shape, bins, scale, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = scale * torch.randn(*shape, bins, generator=g, dtype=dtype)
    h = scale * torch.randn(*shape, bins, generator=g, dtype=dtype)
    d = scale * torch.randn(*shape, bins - 1, generator=g, dtype=dtype)
    return w, h, d


def perturbed(layer: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> torch.nn.Module:
    """Move every parameter off its (identity) initialization.

    Large moves make splines with near-flat bins, whose inverse is ill-conditioned in float32
    (an input error of 1e-7 becomes 1e-7 / slope); the float32 checks use a moderate scale.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return layer


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float64, 1e-9)])
@pytest.mark.parametrize("bins", [1, 2, 8])
def test_spline_inverts_and_logdets_cancel(dtype, tol, bins) -> None:
    x = torch.linspace(-1.5 * BOUND, 1.5 * BOUND, 601, dtype=dtype).repeat(4, 1)
    w, h, d = random_params(x.shape, bins, 1.0, dtype)
    y, ld = rational_quadratic_spline(x, w, h, d, BOUND)
    back, ld_inv = rational_quadratic_spline(y, w, h, d, BOUND, inverse=True)
    assert (back - x).abs().max() <= tol
    assert (ld + ld_inv).abs().max() <= 10 * tol


def test_spline_is_monotone_with_fixed_ends_and_identity_tails() -> None:
    x = torch.linspace(-2 * BOUND, 2 * BOUND, 2001, dtype=torch.float64).repeat(3, 1)
    # one spline per row, evaluated along the row
    w, h, d = (t.expand(3, 2001, -1) for t in random_params((3, 1), 6, 2.0, torch.float64, 1))
    y, ld = rational_quadratic_spline(x, w, h, d, BOUND)
    assert (y.diff(dim=1) > 0).all()
    outside = x.abs() > BOUND
    assert torch.equal(y[outside], x[outside]) and (ld[outside] == 0).all()
    ends = torch.tensor([[-BOUND, BOUND]], dtype=torch.float64).expand(3, 2)
    w2, h2, d2 = (t[:, :2] for t in (w, h, d))
    y_ends, _ = rational_quadratic_spline(ends, w2, h2, d2, BOUND)
    torch.testing.assert_close(y_ends, ends)


def test_spline_logdet_matches_derivative() -> None:
    x = (torch.rand(200, dtype=torch.float64) * 2 - 1) * BOUND
    w, h, d = random_params((200,), 8, 1.0, torch.float64, seed=2)

    def f(v):
        return rational_quadratic_spline(v, w, h, d, BOUND)[0]

    deriv = torch.autograd.grad(f(x.requires_grad_()).sum(), x)[0]
    _, ld = rational_quadratic_spline(x.detach(), w, h, d, BOUND)
    torch.testing.assert_close(ld, deriv.log(), atol=1e-10, rtol=1e-10)


def test_spline_zero_parameters_is_identity() -> None:
    x = torch.linspace(-5, 5, 101)
    zeros = torch.zeros(101, 8)
    y, ld = rational_quadratic_spline(x, zeros, zeros, zeros[:, :7], BOUND)
    torch.testing.assert_close(y, x)
    assert ld.abs().max() < 1e-5


def test_spline_rejects_mismatched_parameters() -> None:
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="slopes needs bins - 1 = 7"):
        rational_quadratic_spline(x, torch.zeros(3, 8), torch.zeros(3, 8), torch.zeros(3, 8))
    with pytest.raises(ValueError, match="same number of bins"):
        rational_quadratic_spline(x, torch.zeros(3, 8), torch.zeros(3, 4), torch.zeros(3, 7))


CASES = [(f, c) for f in (1, 2, 3, 4, 5) for c in (0, 3)]


@pytest.mark.parametrize("features,cond_dim", CASES)
def test_coupling_starts_as_identity(features, cond_dim) -> None:
    layer = SplineCoupling(features, hidden=8, cond_dim=cond_dim, bins=4, bound=BOUND)
    x = torch.randn(6, features)
    cond = torch.randn(6, cond_dim) if cond_dim else None
    z, logdet = layer(x, cond)
    torch.testing.assert_close(z, x)
    assert logdet.abs().max() < 1e-5


@pytest.mark.parametrize("features,cond_dim", CASES)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float64, 1e-9)])
def test_coupling_inverts(features, cond_dim, dtype, tol) -> None:
    torch.manual_seed(features)
    scale = 0.1 if dtype == torch.float32 else 0.3
    layer = perturbed(SplineCoupling(features, 16, cond_dim, 5, BOUND), scale).to(dtype)
    x = 2.0 * torch.randn(64, features, dtype=dtype)  # some rows beyond the bound
    cond = torch.randn(64, cond_dim, dtype=dtype) if cond_dim else None
    z, _ = layer(x, cond)
    assert (z - x).abs().max() > 1e-3  # the layer really transforms
    assert (layer.inverse(z, cond) - x).abs().max() <= tol


@pytest.mark.parametrize("features,cond_dim", CASES)
def test_coupling_logdet_matches_jacobian(features, cond_dim) -> None:
    torch.manual_seed(10 + features)
    layer = perturbed(SplineCoupling(features, 16, cond_dim, bins=5, bound=BOUND)).double()
    x = 1.5 * torch.randn(5, features, dtype=torch.float64)
    cond = torch.randn(5, cond_dim, dtype=torch.float64) if cond_dim else None
    _, logdet = layer(x, cond)
    for i in range(x.shape[0]):
        c = None if cond is None else cond[i : i + 1]
        jac = jacobian(lambda row, c=c: layer(row[None], c)[0][0], x[i])
        torch.testing.assert_close(logdet[i], torch.linalg.slogdet(jac)[1], atol=1e-9, rtol=1e-9)


def test_coupling_depends_on_condition() -> None:
    layer = perturbed(SplineCoupling(3, 16, cond_dim=2, bins=4, bound=BOUND))
    x = torch.randn(4, 3)
    a, _ = layer(x, torch.zeros(4, 2))
    b, _ = layer(x, torch.ones(4, 2))
    assert (a - b).abs().max() > 1e-3


def test_coupling_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="features >= 1"):
        SplineCoupling(0)
    with pytest.raises(ValueError, match="bins must be >= 1"):
        SplineCoupling(2, bins=0)
    with pytest.raises(ValueError, match="bound must be > 0"):
        SplineCoupling(2, bound=0.0)
    layer = SplineCoupling(2, hidden=4, cond_dim=3)
    with pytest.raises(ValueError, match="expected 4 input features"):
        layer(torch.zeros(2, 2), torch.zeros(2, 5))


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-6), (torch.float64, 1e-12)])
def test_softplus_matches_torch_in_value_and_gradient(dtype, tol):
    """The spline's slopes go through flowaug's softplus (torch's CPU kernel is slower): the
    same values and the gradient sigmoid(x), 1/2 at 0 included."""
    x = torch.cat([torch.linspace(-30, 30, 2001, dtype=dtype), torch.zeros(1, dtype=dtype)])
    x.requires_grad_()
    out = _softplus(x)
    exact = torch.logaddexp(x.detach(), torch.zeros((), dtype=dtype))  # F.softplus cuts at 20
    torch.testing.assert_close(out, exact, atol=tol, rtol=0)
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.sigmoid(x.detach()), atol=tol, rtol=0)
    assert x.grad[-1] == 0.5
