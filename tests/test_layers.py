"""Every layer: exact inverse and log-det equal to log|det J| from autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import perturb_zero_init
from torch.autograd.functional import jacobian

from flowaug.flows.dropout import Dropout
from flowaug.flows.layers import (
    ActNorm,
    AffineCoupling,
    FlowStep,
    GaussianPrior,
    InvConv1x1,
    LogitTransform,
    SplineImageCoupling,
    Split,
    Squeeze,
)

COND_DIM = 3

# (name, factory, input shape without batch, uses cond)
LAYERS = [
    ("actnorm-image", lambda: ActNorm(3), (3, 4, 4), False),
    ("actnorm-vector", lambda: ActNorm(5), (5,), False),
    ("invconv-image", lambda: InvConv1x1(4), (4, 2, 2), False),
    ("invconv-vector", lambda: InvConv1x1(5), (5,), False),
    ("coupling-image", lambda: AffineCoupling(4, 8), (4, 2, 2), False),
    ("coupling-image-cond", lambda: AffineCoupling(4, 8, COND_DIM), (4, 2, 2), True),
    ("coupling-odd-channels", lambda: AffineCoupling(3, 8, COND_DIM), (3, 2, 2), True),
    ("coupling-vector-cond", lambda: AffineCoupling(5, 8, COND_DIM, spatial=False), (5,), True),
    ("spline-image-cond", lambda: SplineImageCoupling(4, 8, COND_DIM), (4, 2, 2), True),
    ("spline-vector", lambda: SplineImageCoupling(3, 8, spatial=False), (3,), False),
    ("flowstep-spline", lambda: FlowStep(4, 8, COND_DIM, coupling="spline"), (4, 2, 2), True),
    ("squeeze", lambda: Squeeze(), (2, 4, 4), False),
    ("split-cond", lambda: Split(4, 8, COND_DIM), (4, 2, 2), True),
    ("split-vector", lambda: Split(4, 8, spatial=False), (4,), False),
    ("prior-cond", lambda: GaussianPrior((2, 2, 2), COND_DIM), (2, 2, 2), True),
    ("prior", lambda: GaussianPrior((3,)), (3,), False),
    ("logit", lambda: LogitTransform(0.05), (2, 2, 2), False),
    ("flowstep-cond", lambda: FlowStep(4, 8, COND_DIM), (4, 2, 2), True),
]


def _make(factory, shape, dtype, batch=3):
    layer = perturb_zero_init(factory()).to(dtype)
    x = torch.rand(batch, *shape, dtype=dtype)
    if isinstance(layer, (ActNorm, FlowStep)):
        layer.train()
        layer(torch.randn(8, *shape, dtype=dtype) * 2 + 1)  # data-dependent init, not identity
    layer.eval()
    return layer, x


@pytest.mark.parametrize("name,factory,shape,conditioned", LAYERS, ids=[c[0] for c in LAYERS])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float64, 1e-9)])
def test_inverse_is_exact(name, factory, shape, conditioned, dtype, tol):
    layer, x = _make(factory, shape, dtype)
    cond = torch.randn(x.shape[0], COND_DIM, dtype=dtype) if conditioned else None
    z, logdet = layer(x, cond)
    assert z.shape == (x.shape[0], *layer_out_shape(layer, shape))
    assert logdet.shape == (x.shape[0],)
    assert (layer.inverse(z, cond) - x).abs().max() <= tol
    if not isinstance(layer, Squeeze):  # a non-trivial map, so the check above means something
        assert (z.reshape(x.shape[0], -1) - x.reshape(x.shape[0], -1)).abs().max() > 1e-3


def layer_out_shape(layer, shape):
    if isinstance(layer, Squeeze):
        c, h, w = shape
        return (4 * c, h // 2, w // 2)
    return shape


@pytest.mark.parametrize("name,factory,shape,conditioned", LAYERS, ids=[c[0] for c in LAYERS])
def test_logdet_matches_autograd_jacobian(name, factory, shape, conditioned):
    layer, x = _make(factory, shape, torch.float64)
    cond = torch.randn(x.shape[0], COND_DIM, dtype=torch.float64) if conditioned else None
    _, logdet = layer(x, cond)
    for i in range(x.shape[0]):
        ci = None if cond is None else cond[i : i + 1]

        def f(xi, ci=ci):
            return layer(xi.view(1, *shape), ci)[0].flatten()

        jac = jacobian(f, x[i].flatten())
        expected = torch.linalg.slogdet(jac)[1]
        assert torch.allclose(logdet[i], expected, atol=1e-8), (logdet[i], expected)


def test_actnorm_initializes_to_unit_statistics():
    layer = ActNorm(3).train()
    x = torch.randn(64, 3, 4, 4) * torch.tensor([1.0, 5.0, 0.1]).view(1, 3, 1, 1) + 7
    z, _ = layer(x)
    assert bool(layer.initialized)
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(z.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)


def test_actnorm_does_not_reinitialize_once_initialized():
    layer = ActNorm(2).train()
    layer(torch.randn(16, 2))
    before = layer.loc.detach().clone()
    layer(torch.randn(16, 2) + 100)
    assert torch.equal(layer.loc.detach(), before)


def test_coupling_scale_is_bounded():
    layer = AffineCoupling(2, 4, spatial=False, clamp=1.5)
    with torch.no_grad():
        layer.net.out.weight.fill_(100.0)
    _, logdet = layer(torch.full((4, 2), 10.0))
    assert logdet.abs().max() <= 1.5 + 1e-6


def test_coupling_and_split_reject_single_channel():
    with pytest.raises(ValueError, match="channels >= 2"):
        AffineCoupling(1)
    with pytest.raises(ValueError, match="channels >= 2"):
        Split(1)


def test_squeeze_rejects_odd_sizes():
    with pytest.raises(ValueError, match="even height and width"):
        Squeeze()(torch.zeros(1, 1, 3, 4))


@pytest.mark.parametrize("training", [True, False])
def test_evaluating_restores_the_mode_even_after_an_error(training):
    from flowaug.flows.base import evaluating

    module = torch.nn.Dropout(0.5).train(training)
    with pytest.raises(RuntimeError), evaluating(module):
        assert not module.training
        raise RuntimeError("inside the block")
    assert module.training is training


@pytest.mark.parametrize(
    "value,expected",
    [(1, True), (0.5, True), (np.float32(0.5), True), (np.int64(3), True), (True, False),
     (np.bool_(True), False), ("1", False), (None, False), (torch.tensor(0.5), False)],
)  # fmt: skip
def test_is_number(value, expected):
    from flowaug._checks import is_number

    assert is_number(value) is expected


@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("inplace", [False, True])
def test_dropout_matches_torch_dropout_in_law(p, dtype, inplace):
    """flowaug's CPU Dropout: the values, the dropped share, the gradient, the dtype and the
    eval-mode identity of ``nn.Dropout``."""
    x = torch.rand(64, 32, 8, dtype=dtype) + 1.0
    torch.manual_seed(0)
    ours = Dropout(p, inplace=inplace).train()
    x_in = x.clone().requires_grad_(not inplace)
    out = ours(x_in if not inplace else x_in.clone())
    assert out.dtype == dtype and out.shape == x.shape
    kept = out != 0
    scale = 1.0 / (1.0 - p) if p < 1 else 0.0
    torch.testing.assert_close(out[kept], (x * scale).to(dtype)[kept])
    assert abs(float(1 - kept.float().mean()) - p) < 0.02  # 16,384 draws: sd < 0.004
    if not inplace and p < 1:
        out.sum().backward()
        torch.testing.assert_close(x_in.grad, kept.to(dtype) * scale)
    assert torch.equal(ours.eval()(x), x)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_mask_is_unbiased_in_every_lane(p):
    """The mask reads four 16-bit integers from each 64-bit draw: every one of the four
    positions must drop a share ``p`` (a lane with a fixed sign bit would not)."""
    torch.manual_seed(1)
    out = Dropout(p).train()(torch.ones(4 * 50_000))
    shares = (out == 0).float().view(-1, 4).mean(0)  # sd of each: < 0.0023
    assert torch.allclose(shares, torch.full((4,), p), atol=0.01), shares


def test_dropout_follows_the_global_seed():
    x = torch.ones(1000)
    layer = Dropout(0.3).train()
    torch.manual_seed(5)
    first = layer(x)
    torch.manual_seed(5)
    assert torch.equal(layer(x), first)
    assert not torch.equal(layer(x), first)
