"""Glow as a whole beyond the model contract (tests/test_flow_contract.py): its scales,
conditioning, sampling, bits/dim and input validation."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import perturb_zero_init

from flowaug import Glow
from flowaug.flows.layers import LogitTransform

# (image_shape, num_classes, num_scales)
CONFIGS = [
    ((1, 4, 4), 3, None),
    ((3, 4, 4), 0, None),
    ((1, 8, 8), 10, 2),
    ((2, 8, 8), None, 3),
    ((1, 4, 4), 2, "spline"),
]


def _model(shape, num_classes, num_scales, dtype=torch.float64):
    coupling = "affine"
    if num_scales == "spline":
        coupling, num_scales = "spline", None
    model = Glow(
        shape, num_classes, num_scales=num_scales, depth=2, hidden=8, cond_dim=4, coupling=coupling
    )
    model = perturb_zero_init(model).to(dtype)
    x = torch.rand(16, *shape, dtype=dtype)
    model.initialize(x, _labels(model, 16))
    return model.eval()


def _labels(model, n):
    return torch.arange(n) % model.num_classes if model.num_classes else None


@pytest.mark.parametrize("shape,num_classes,num_scales", CONFIGS)
def test_latent_scale_sizes_partition_eps_finest_first(shape, num_classes, num_scales):
    model = _model(shape, num_classes, num_scales)
    sizes = model.latent_scale_sizes
    assert len(sizes) == model.config["num_scales"] and sum(sizes) == model.event_dim
    # each split factors out half of what is left: the parts shrink from fine to coarse
    assert all(a >= b for a, b in zip(sizes, sizes[1:], strict=False))


def test_logit_support_matches_integration_bounds():
    layer = LogitTransform(0.05)
    u = torch.tensor([[-0.05 / 0.9 + 1e-9, (0.95) / 0.9 - 1e-9]], dtype=torch.float64)
    assert torch.isfinite(layer(u)[0]).all()


def test_class_conditioning_is_learned():
    """Two distinguishable classes: after a few steps the right label explains x better."""
    torch.manual_seed(0)
    model = Glow((1, 4, 4), num_classes=2, depth=2, hidden=16, cond_dim=4)
    n = 128
    y = torch.arange(n) % 2
    base = torch.where(y.view(-1, 1, 1, 1) == 0, 0.2, 0.8)
    x = (base + 0.05 * torch.randn(n, 1, 4, 4)).clamp(0.01, 0.99)
    model.initialize(x, y)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        loss = -model.log_prob(x, y).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        right = model.log_prob(x, y)
        wrong = model.log_prob(x, 1 - y)
        posterior = model.classify(x)
    assert (right > wrong).float().mean() > 0.9
    assert (posterior.argmax(1) == y).float().mean() > 0.9
    samples = model.sample(torch.tensor([0] * 32 + [1] * 32), temperature=0.7)
    assert samples[:32].mean() < 0.5 < samples[32:].mean()


def test_sample_shape_range_and_determinism():
    model = _model((1, 8, 8), 10, 2, torch.float32)
    y = torch.tensor([3, 3, 7])
    a = model.sample(y, temperature=0.8, generator=torch.Generator().manual_seed(1))
    b = model.sample(y, temperature=0.8, generator=torch.Generator().manual_seed(1))
    assert a.shape == (3, 1, 8, 8) and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    unconditional = _model((1, 4, 4), 0, None, torch.float32)
    assert unconditional.sample(num_samples=4).shape == (4, 1, 4, 4)


def test_temperature_zero_gives_the_mode_of_each_class():
    model = _model((1, 4, 4), 3, None, torch.float32)
    s = model.sample(torch.tensor([1, 1]), temperature=0.0)
    assert torch.allclose(s[0], s[1])


def test_bits_per_dim_of_integer_images():
    model = _model((1, 8, 8), 10, 2, torch.float32)
    x = torch.randint(0, 17, (6, 1, 8, 8))
    y = torch.arange(6)
    bpd = model.bits_per_dim(x, y, levels=17, generator=torch.Generator().manual_seed(0))
    assert bpd.shape == (6,) and torch.isfinite(bpd).all()
    # identical to the generic path, with the same dequantization noise
    from flowaug.pixels import dequantize

    x01 = dequantize(x, 17, generator=torch.Generator().manual_seed(0))
    expected = (-model.log_prob(x01, y) + 64 * math.log(17)) / (64 * math.log(2))
    assert torch.allclose(bpd, expected, atol=1e-5)


@pytest.mark.parametrize(
    "x,y,error,match",
    [
        (torch.rand(2, 3, 8, 8), [0, 1], ValueError, r"shape \[B, 1, 8, 8\]"),
        (torch.rand(2, 1, 4, 4), [0, 1], ValueError, r"got \[2, 1, 4, 4\]"),
        (torch.rand(2, 1, 8, 8), [0, 10], ValueError, "outside"),
        (torch.rand(2, 1, 8, 8), [-1, 0], ValueError, "outside"),
        (torch.rand(2, 1, 8, 8), [0, 1, 2], ValueError, "3 labels for a batch of 2"),
        (torch.rand(2, 1, 8, 8), None, ValueError, "y is required"),
        (torch.full((2, 1, 8, 8), float("nan")), [0, 1], ValueError, "NaN"),
        (
            torch.rand(2, 1, 8, 8) * 16,
            [0, 1],
            ValueError,
            r"outside the model space .*prepare_batch",
        ),
        (torch.rand(2, 1, 8, 8) * 2 - 1, [0, 1], ValueError, "outside the model space"),
        (torch.randint(0, 255, (2, 1, 8, 8)), [0, 1], TypeError, "floating-point"),
        (torch.rand(2, 1, 8, 8), torch.tensor([0.0, 1.0]), TypeError, "integer class"),
        ([[0.5]], [0], TypeError, "torch.Tensor"),
    ],
)
def test_bad_input_gets_a_clear_error(x, y, error, match):
    model = Glow((1, 8, 8), 10, depth=1, hidden=4)
    with pytest.raises(error, match=match):
        model.log_prob(x, y)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(image_shape=(1, 8)), "image_shape must be"),
        (dict(image_shape=(1, 6, 6), num_scales=2), "divisible by 4"),
        (dict(image_shape=(1, 8, 8), depth=0), "depth"),
        (dict(image_shape=(1, 8, 8), num_classes=-1), "num_classes"),
        (dict(image_shape=(1, 8, 8), levels=1), "levels"),
        (dict(image_shape=(1, 8, 8), coupling="additive"), "coupling"),
        (dict(image_shape=(1, 8, 8), hidden=0), r"hidden .* must be an int >= 1, got 0"),
        (dict(image_shape=(1, 8, 8), dropout=1.0), r"dropout must be a probability in \[0, 1\)"),
    ],
)
def test_bad_configuration_gets_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Glow(**kwargs)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32), (1, 28, 28), (3, 16, 16)])
def test_image_sizes_from_8_to_32(shape):
    model = Glow(shape, 2, depth=1, hidden=8)
    x = torch.rand(2, *shape)
    y = torch.tensor([0, 1])
    model.initialize(x, y)
    assert torch.isfinite(model.log_prob(x, y)).all()
    assert (model.decode(model.encode(x, y), y) - x).abs().max() < 1e-4


def test_rsample_with_log_prob_is_differentiable_and_consistent():
    model = _model((1, 4, 4), 2, None, torch.float64)
    x, log_q = model.rsample_with_log_prob(torch.tensor([0, 1, 1]))
    assert x.shape == (3, 1, 4, 4) and log_q.shape == (3,)
    assert torch.allclose(log_q, model.log_prob(x, torch.tensor([0, 1, 1])))
    log_q.sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_sample_records_no_graph_but_its_samples_can_feed_a_training_step():
    # sample() is torch.distributions' sample: no gradients (rsample_with_log_prob has them),
    # and no inference-mode tensors, which a classifier's backward pass would refuse
    model = _model((1, 4, 4), 2, None, torch.float32)
    x = model.sample(torch.tensor([0, 1]))
    assert not x.requires_grad and x.grad_fn is None and not x.is_inference()
    layer = torch.nn.Conv2d(1, 2, 3)
    layer(x).sum().backward()
    assert layer.weight.grad is not None


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_rsample_log_q_is_the_density_of_its_samples_in_train_mode(dropout):
    # a fresh model is in train mode: no ActNorm initialization from the samples and no
    # dropout between the decode and the re-encode
    torch.manual_seed(0)
    model = perturb_zero_init(Glow((1, 4, 4), 2, depth=1, hidden=8, dropout=dropout)).double()
    assert model.training
    x, log_q = model.rsample_with_log_prob(torch.tensor([0, 1, 1]))
    assert model.training  # its mode is left alone
    with torch.no_grad():
        assert torch.allclose(log_q, model.eval().log_prob(x, torch.tensor([0, 1, 1])))


@pytest.mark.parametrize("method", ["sample", "rsample_with_log_prob"])
def test_one_class_and_num_samples(method):
    model = Glow((1, 8, 8), 10, depth=1, hidden=8).eval()
    g = torch.Generator().manual_seed(0)
    draw = getattr(model, method)
    out = draw(7, num_samples=16, generator=g)
    x = out[0] if isinstance(out, tuple) else out
    assert x.shape == (16, 1, 8, 8)
    with pytest.raises(ValueError, match="num_samples=4 but y holds 3 labels"):
        draw(torch.tensor([0, 1, 2]), num_samples=4)
    with pytest.raises(ValueError, match="num_samples must be an int >= 0"):
        draw(7, num_samples=-1)
    empty = draw([], generator=g)
    assert (empty[0] if isinstance(empty, tuple) else empty).shape == (0, 1, 8, 8)


@pytest.mark.parametrize("temperature", [float("inf"), float("nan"), -0.5, True])
def test_sample_refuses_bad_temperatures(temperature):
    model = Glow((1, 8, 8), 10, depth=1, hidden=8).eval()
    with pytest.raises((TypeError, ValueError), match="temperature must be"):
        model.sample(torch.tensor([1]), temperature=temperature)


def test_metrics_and_the_classifier_never_change_a_model_in_train_mode():
    model = Glow((1, 8, 8), 10, depth=1, hidden=8, dropout=0.3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    a = model.bits_per_dim(x, torch.arange(3), generator=torch.Generator().manual_seed(0))
    b = model.bits_per_dim(x, torch.arange(3), generator=torch.Generator().manual_seed(0))
    posterior = model.classify(torch.rand(3, 1, 8, 8))
    assert torch.equal(a, b) and torch.allclose(posterior.sum(1), torch.ones(3))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="outside the model space"):
        model.classify(torch.rand(3, 1, 8, 8) * 3)


def test_float64_input_is_cast_to_the_model_dtype():
    # float64 data (numpy's default) gave "Input type (double) and bias type (float)" errors
    from flowaug.tabular import TabularFlow

    glow = perturb_zero_init(Glow((1, 8, 8), 3, depth=1, hidden=8)).eval()
    table = perturb_zero_init(TabularFlow(4, 3, depth=1, hidden=8)).eval()
    for model in (glow, table):
        x64 = torch.rand(4, *model.event_shape, dtype=torch.float64)
        x32, y = x64.float(), torch.tensor([0, 1, 2, 0])
        assert torch.equal(model.log_prob(x64, y), model.log_prob(x32, y))
        assert torch.equal(model.encode(x64, y), model.encode(x32, y))
        assert torch.equal(model.classify(x64), model.classify(x32))
        eps = model.encode(x32, y)
        assert torch.equal(model.decode(eps.double(), y), model.decode(eps, y))
        assert model.log_prob(x64, y).dtype == torch.float32


@pytest.mark.parametrize(
    "prior, error, match",
    [
        ([0.5, 0.5], ValueError, "got shape \\[2\\]"),
        ([[0.2, 0.3, 0.5]], ValueError, "got shape \\[1, 3\\]"),
        ([0.5, -0.5, 1.0], ValueError, "got \\[0.5, -0.5, 1.0\\]"),
        ([0.5, 0.0, 0.5], ValueError, "small positive weight"),
        ([1.0, float("nan"), 1.0], ValueError, "nan"),
        ([1.0, float("inf"), 1.0], ValueError, "inf"),
        ("abc", TypeError, "prior must be 3 finite numbers > 0"),
    ],
)
def test_classify_refuses_bad_priors(prior, error, match):
    model = Glow((1, 8, 8), 3, depth=1, hidden=8).eval()
    with pytest.raises(error, match=match):
        model.classify(torch.rand(2, 1, 8, 8), prior=prior)


def test_classify_with_a_prior_is_bayes_rule_at_any_scale():
    model = perturb_zero_init(Glow((1, 8, 8), 3, depth=1, hidden=8), 0.3).eval()
    x = torch.rand(5, 1, 8, 8)
    prior = torch.tensor([0.2, 0.3, 0.5])
    expected = (model.class_log_prob(x) + prior.log()).softmax(1)
    assert torch.allclose(model.classify(x, prior=prior), expected, atol=1e-6)
    assert torch.allclose(model.classify(x, prior=[2, 3, 5]), expected, atol=1e-6)


def test_num_levels_is_a_deprecated_name_of_num_scales():
    with pytest.warns(DeprecationWarning, match="num_scales"):
        old = Glow((1, 8, 8), 2, num_levels=2, depth=1, hidden=4)
    assert old.config["num_scales"] == 2 and "num_levels" not in old.config
    with pytest.raises(ValueError, match="disagree"), pytest.warns(DeprecationWarning):
        Glow((1, 8, 8), 2, num_scales=1, num_levels=2)


def test_a_model_saved_with_num_levels_still_loads(tmp_path, recwarn):
    import json

    import flowaug

    model = Glow((1, 8, 8), 2, num_scales=2, depth=1, hidden=4)
    model.save_pretrained(str(tmp_path))
    record = json.loads((tmp_path / "config.json").read_text())
    record["config"]["num_levels"] = record["config"].pop("num_scales")
    (tmp_path / "config.json").write_text(json.dumps(record))
    loaded = flowaug.load(tmp_path)
    assert loaded.config == model.config
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]
