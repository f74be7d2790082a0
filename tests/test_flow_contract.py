"""The contract every flowaug model keeps, checked on each: shapes, exact inverse, log-det
against autograd, a density that integrates to one, reproducible sampling, a save/load round
trip and an informative repr. (Like zuko's tests/test_flows.py: one property, every model.)"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import perturb_zero_init
from torch.autograd.functional import jacobian

import flowaug
from flowaug import AffineFlow1D, Glow, TabularFlow
from flowaug.flows.checks import standard_normal_log_prob


def _glow(shape, num_classes, **kwargs):
    return perturb_zero_init(
        Glow(shape, num_classes, depth=2, hidden=8, cond_dim=4, **kwargs), scale=0.1
    )


def _table(features, num_classes, coupling):
    return TabularFlow(
        features, num_classes, depth=2, hidden=8, cond_dim=3, coupling=coupling, bins=4, bound=3.0
    )


# name -> (builder, draw of model-space inputs [n, *event_shape])
MODELS = {
    "glow-affine": (lambda: _glow((1, 4, 4), 3), "unit"),
    "glow-unconditional": (lambda: _glow((3, 4, 4), 0), "unit"),
    "glow-two-scales": (lambda: _glow((1, 8, 8), 10, num_scales=2), "unit"),
    "glow-three-scales": (lambda: _glow((2, 8, 8), None, num_scales=3), "unit"),
    "glow-spline": (lambda: _glow((1, 4, 4), 2, coupling="spline", bins=4), "unit"),
}
# every table shape the TabularFlow tests covered: 1, 2, 3, 5 features x 0, 3 classes x coupling
MODELS.update(
    {
        f"table-{f}x{c}-{k}": ((lambda f=f, c=c, k=k: _table(f, c, k)), "real")
        for f in (1, 2, 3, 5)
        for c in (0, 3)
        for k in ("spline", "affine")
    }
)


def _inputs(kind, shape, n, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "unit":
        return (torch.rand(n, *shape, generator=g) * 0.98 + 0.01).to(dtype)
    return (2 * torch.randn(n, *shape, generator=g) + 1).to(dtype)


def _labels(model, n):
    return torch.arange(n) % model.num_classes if model.num_classes else None


def _model(name, dtype=torch.float64):
    """A model off its identity start: initialized on data, then every parameter perturbed."""
    build, kind = MODELS[name]
    torch.manual_seed(0)
    model = build()
    model.initialize(_inputs(kind, model.event_shape, 32, torch.float32), _labels(model, 32))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.to(dtype).eval(), kind


@pytest.mark.parametrize("name", MODELS)
def test_shapes(name):
    model, kind = _model(name, torch.float32)
    x = _inputs(kind, model.event_shape, 6, torch.float32)
    y = _labels(model, 6)
    assert model.encode(x, y).shape == (6, model.event_dim) == (6, math.prod(model.event_shape))
    assert model.log_prob(x, y).shape == (6,)
    assert model.classify(x).shape == (6, model.num_classes) if model.num_classes else True
    assert sum(model.latent_scale_sizes) == model.event_dim


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float64, 1e-9)])
def test_decode_inverts_encode_and_back(name, dtype, tol):
    model, kind = _model(name, dtype)
    x = _inputs(kind, model.event_shape, 20, dtype)
    y = _labels(model, 20)
    eps = model.encode(x, y)
    assert (eps - x.flatten(1)).abs().max() > 1e-2  # not the identity
    assert (model.decode(eps, y) - x).abs().max() <= tol
    if kind == "real":  # images are clamped to [0, 1] on the way out: only x -> z -> x is exact
        z = 0.5 * torch.randn(20, model.event_dim, dtype=dtype)
        assert (model.encode(model.decode(z, y), y) - z).abs().max() <= 10 * tol


@pytest.mark.parametrize("name", MODELS)
def test_log_prob_matches_autograd_jacobian(name):
    model, kind = _model(name)
    x = _inputs(kind, model.event_shape, 2, torch.float64, seed=3)
    y = _labels(model, 2)
    log_prob = model.log_prob(x, y)
    for i in range(2):
        yi = None if y is None else y[i : i + 1]

        def encode(row, yi=yi):
            return model.encode(row.view(1, *model.event_shape), yi).flatten()

        jac = jacobian(encode, x[i].flatten())
        eps = encode(x[i].flatten())[None]
        expected = standard_normal_log_prob(eps)[0] + torch.linalg.slogdet(jac)[1]
        tol = 1e-9 if kind == "real" else 1e-7  # the image flows' logit and convs lose more
        torch.testing.assert_close(log_prob[i], expected, atol=tol, rtol=tol)


# tiny models whose density can be integrated on a grid: (builder, axis, points per axis)
TINY = {
    "glow-1x2x2": (lambda: _glow((1, 2, 2), 2, num_scales=1), "logit-support", 28),
    "glow-unconditional-1x2x2": (lambda: _glow((1, 2, 2), 0, num_scales=1), "logit-support", 28),
    "table-spline-2d": (lambda: _table(2, 2, "spline"), (-25.0, 25.0), 501),
    "table-affine-2d": (lambda: _table(2, 2, "affine"), (-25.0, 25.0), 501),
}


@pytest.mark.parametrize("name", TINY)
def test_density_integrates_to_one(name):
    build, bounds, n = TINY[name]
    torch.manual_seed(0)
    model = build().double().eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    lo, hi = model.input_bounds if bounds == "logit-support" else bounds
    edges = torch.linspace(lo, hi, n + 1, dtype=torch.float64)
    mids = (edges[1:] + edges[:-1]) / 2
    grid = torch.cartesian_prod(*[mids] * model.event_dim).view(-1, *model.event_shape)
    for c in range(max(model.num_classes, 1)):
        y = torch.full((len(grid),), c) if model.num_classes else None
        with torch.no_grad():
            mass = sum(
                model.log_prob(part, None if y is None else y[: len(part)]).exp().sum()
                for part in grid.split(100_000)
            )
        integral = float(mass) * ((hi - lo) / n) ** model.event_dim
        assert abs(integral - 1) < 0.02, (c, integral)


@pytest.mark.parametrize("num_layers", [1, 3])
def test_affine1d_keeps_the_contract(num_layers):
    flow = AffineFlow1D(num_layers).double()
    with torch.no_grad():
        flow.log_scale.normal_(0, 0.7)
        flow.shift.normal_(0, 2)
    x = 3 * torch.randn(50, dtype=torch.float64)
    z, logdet = flow(x)
    assert z.shape == logdet.shape == x.shape
    assert (flow.inverse(z) - x).abs().max() < 1e-9
    dz_dx = jacobian(lambda t: flow(t)[0], x).diagonal()
    torch.testing.assert_close(logdet, dz_dx.abs().log())
    mean, std = flow.mean.item(), flow.std.item()
    grid = torch.linspace(mean - 10 * std, mean + 10 * std, 20001, dtype=torch.float64)
    assert abs(torch.trapezoid(flow.log_prob(grid).exp(), grid).item() - 1) < 1e-6
    a = flow.sample(5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, flow.sample(5, generator=torch.Generator().manual_seed(4)))


@pytest.mark.parametrize("name", MODELS)
def test_sampling_is_reproducible_and_in_model_space(name):
    model, kind = _model(name, torch.float32)
    y = _labels(model, 4)
    n = None if model.num_classes else 4

    def draw():
        return model.sample(
            y, temperature=0.8, generator=torch.Generator().manual_seed(5), num_samples=n
        )

    a = draw()
    assert a.shape == (4, *model.event_shape) and torch.equal(a, draw())
    assert torch.isfinite(a).all()
    if kind == "unit":
        lo, hi = model.input_bounds
        assert a.min() >= lo and a.max() <= hi
    x, log_q = model.rsample_with_log_prob(y, num_samples=n)
    torch.testing.assert_close(log_q, model.log_prob(x, y), atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_save_and_load_give_the_same_model(name, tmp_path):
    model, kind = _model(name, torch.float32)
    names = [f"class {c}" for c in range(model.num_classes)] or None
    model.save_pretrained(str(tmp_path), class_names=names)
    loaded = flowaug.load(tmp_path)
    assert type(loaded) is type(model) and loaded.config == model.config
    assert loaded.class_names == names and not loaded.training
    x = _inputs(kind, model.event_shape, 8, torch.float32)
    y = _labels(model, 8)
    torch.testing.assert_close(loaded.log_prob(x, y), model.log_prob(x, y), rtol=0, atol=0)
    assert type(model).from_pretrained(str(tmp_path)).config == model.config


@pytest.mark.parametrize("name", MODELS)
def test_repr_shows_what_the_model_is(name):
    model, _ = _model(name, torch.float32)
    head = " ".join(repr(model).splitlines()[:2])
    assert head.startswith(f"{type(model).__name__}(")
    assert (
        f"num_classes={model.num_classes}" in head
        and f"coupling={model.config['coupling']!r}" in head
    )
