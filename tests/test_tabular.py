"""TabularFlow: exact invertibility, log-det, normalization, and the DataFrame round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from flowaug.tabular import TabularFlow


def random_flow(
    features: int,
    classes: int,
    coupling: str = "spline",
    seed: int = 0,
    scale: float = 0.2,
    dtype=torch.float64,
) -> TabularFlow:
    """A small flow with every parameter moved off its (identity) initialization."""
    torch.manual_seed(seed)
    model = TabularFlow(
        features, classes, depth=2, hidden=8, cond_dim=3, coupling=coupling, bins=4, bound=3.0
    )
    x = torch.randn(32, features) * 2 + 1
    y = torch.randint(0, classes, (32,)) if classes else None
    model.initialize(x, y)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model.to(dtype).eval()


def labels(classes: int, n: int) -> torch.Tensor | None:
    return torch.arange(n) % classes if classes else None


CASES = [(f, c, k) for f in (1, 2, 3, 5) for c in (0, 3) for k in ("spline", "affine")]


@pytest.mark.parametrize("classes", [0, 2])
def test_density_integrates_to_one_in_1d(classes) -> None:
    model = random_flow(1, classes, seed=2, scale=0.3)
    grid = torch.linspace(-40, 40, 40001, dtype=torch.float64)[:, None]
    for c in range(max(classes, 1)):
        y = torch.full((grid.shape[0],), c) if classes else None
        with torch.no_grad():
            density = model.log_prob(grid, y).exp()
        mass = torch.trapezoid(density, grid[:, 0])
        assert abs(float(mass) - 1) < 0.02, (c, float(mass))


@pytest.mark.parametrize("num_classes", [3, 0])
def test_initialize_on_one_row_per_class_stays_sane(num_classes) -> None:
    # no within-class spread: the whitening must not divide by zero
    torch.manual_seed(0)
    n = max(num_classes, 1)
    x, y = torch.randn(n, 5), (torch.arange(n) if num_classes else None)
    model = TabularFlow(5, num_classes, depth=2, hidden=8)
    model.initialize(x, y)
    model.eval()
    with torch.no_grad():
        own = model.log_prob(x, y)
        other = model.log_prob(torch.randn(n, 5), y)
        draws = model.sample(
            y, generator=torch.Generator().manual_seed(0), num_samples=None if num_classes else 1
        )
    assert torch.isfinite(own).all() and (own > -50).all() and (other > -200).all()
    assert (draws - x).abs().max() > 0.05  # samples vary around the row, not copy it


def test_initialize_fits_each_class() -> None:
    """After ``initialize`` alone, each class's samples match its mean, scales and correlation."""
    torch.manual_seed(0)
    x = torch.randn(300, 3)
    x[:, 1] = x[:, 0] + 0.3 * x[:, 1]  # strongly correlated within every class
    y = torch.arange(300) % 3
    x[y == 1] += torch.tensor([4.0, -3.0, 0.0])
    x[y == 2] *= 0.3
    model = TabularFlow(3, 3, depth=2, hidden=8)
    model.initialize(x, y)
    model.eval()
    with torch.no_grad():
        for c in range(3):
            s = model.sample(torch.full((4000,), c), generator=torch.Generator().manual_seed(c))
            rows = x[y == c]
            assert (s.mean(0) - rows.mean(0)).abs().max() < 0.15 * rows.std(0).max()
            ratio = s.std(0) / rows.std(0)
            assert ((ratio - 1).abs() < 0.3).all(), (c, ratio)
            corr_s, corr_x = torch.corrcoef(s.T)[0, 1], torch.corrcoef(rows.T)[0, 1]
            assert (corr_s - corr_x).abs() < 0.1, (c, corr_s, corr_x)


def test_constructor_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_features"):
        TabularFlow(0, 2)
    with pytest.raises(ValueError, match="coupling"):
        TabularFlow(3, 2, coupling="maf")
    with pytest.raises(ValueError, match="depth"):
        TabularFlow(3, 2, depth=0)
    with pytest.raises(ValueError, match="num_classes"):
        TabularFlow(3, -1)


# --- DataFrames -----------------------------------------------------------------------------------
def table(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    kind = rng.choice(["cat", "dog", "fox"], n)
    return pd.DataFrame(
        {
            "weight": rng.normal(10, 2, n) + (kind == "dog") * 5,
            "legs": rng.integers(3, 5, n).astype(np.int32),
            "color": pd.Categorical(
                rng.choice(["red", "brown", "grey"], n), categories=["red", "brown", "grey", "blue"]
            ),
            "indoor": rng.random(n) < 0.5,
            "name_len": rng.integers(2, 9, n),
            "species": kind,
        }
    )


@pytest.fixture(scope="module")
def frame_model():
    df = table()
    torch.manual_seed(0)
    model = TabularFlow.from_frame(df, label="species", depth=2, hidden=16)
    x, y = model.encode_frame(df, seed=0)
    model.initialize(x, y)
    return df, model


def test_from_frame_builds_the_right_model(frame_model) -> None:
    df, model = frame_model
    assert model.num_classes == 3 and model.class_names == ["cat", "dog", "fox"]
    assert model.event_shape == (1 + 1 + 3 + 1 + 1,)  # weight, legs, color one-hot, indoor, len
    x, y = model.encode_frame(df, seed=0)
    assert x.dtype == torch.float32 and x.shape == (60, 7)
    assert y.tolist() == [["cat", "dog", "fox"].index(s) for s in df["species"]]
    pd.testing.assert_frame_equal(model.decode_frame(x, y), df, check_exact=False, rtol=1e-5)
    assert torch.isfinite(model.log_prob(x, y)).all()


def test_sample_frame_gives_valid_rows_with_original_dtypes(frame_model) -> None:
    df, model = frame_model
    out = model.sample_frame({"dog": 40, "fox": 5}, temperature=1.5, seed=0)
    assert list(out.columns) == list(df.columns)
    assert (out.dtypes == df.dtypes).all()
    assert list(out["color"].cat.categories) == ["red", "brown", "grey", "blue"]
    assert set(out["color"]) <= {"red", "brown", "grey"}
    assert out["species"].tolist() == ["dog"] * 40 + ["fox"] * 5
    assert out["legs"].between(3, 4).all() and out["name_len"].between(2, 8).all()
    assert out["weight"].between(df["weight"].min(), df["weight"].max()).all()
    assert len(model.sample_frame(4, seed=1)) == 12
    assert list(out.index) == list(range(45))


def test_sample_frame_is_deterministic_for_a_seed(frame_model) -> None:
    _, model = frame_model
    a = model.sample_frame(10, seed=3)
    pd.testing.assert_frame_equal(a, model.sample_frame(10, seed=3))
    assert not a.equals(model.sample_frame(10, seed=4))


def test_sample_frame_rejects_bad_counts(frame_model) -> None:
    _, model = frame_model
    with pytest.raises(ValueError, match="unknown class 'wolf'"):
        model.sample_frame({"wolf": 3})
    with pytest.raises(ValueError, match="n_per_class must be an integer >= 0"):
        model.sample_frame(-1)
    with pytest.raises(ValueError, match="from_frame"):
        TabularFlow(3, 2).sample_frame(2)
    with pytest.raises(TypeError, match="from_frame sets num_classes"):
        TabularFlow.from_frame(table(), label="species", num_classes=3)


def test_prepare_batch_redraws_discrete_noise_only(frame_model) -> None:
    df, model = frame_model
    x, y = model.encode_frame(df, seed=0)
    fresh = model.prepare_batch(x, torch.Generator().manual_seed(0))
    pd.testing.assert_frame_equal(model.decode_frame(fresh, y), model.decode_frame(x, y))
    assert torch.equal(fresh[:, 0], x[:, 0])  # weight is continuous
    assert (fresh[:, 1] - x[:, 1]).abs().max() > 1e-3  # legs is dequantized
    noisy = TabularFlow(**{**model.config, "noise_std": 0.5}).train()
    moved = noisy.prepare_batch(x, torch.Generator().manual_seed(0))
    assert (moved[:, 0] - x[:, 0]).abs().max() > 1e-2
    assert torch.equal(noisy.eval().prepare_batch(x, torch.Generator().manual_seed(0)), fresh)


def test_config_is_json_and_rebuilds_the_model(frame_model) -> None:
    _, model = frame_model
    config = json.loads(json.dumps(model.config))
    again = TabularFlow(**config)
    again.load_state_dict(model.state_dict())
    pd.testing.assert_frame_equal(again.sample_frame(7, seed=5), model.sample_frame(7, seed=5))


def test_save_and_load_restore_encoders(frame_model, tmp_path) -> None:
    _, model = frame_model
    model.save_pretrained(tmp_path / "m")
    loaded = TabularFlow.from_pretrained(tmp_path / "m")
    assert loaded.class_names == ["cat", "dog", "fox"]
    pd.testing.assert_frame_equal(loaded.sample_frame(6, seed=2), model.sample_frame(6, seed=2))


def test_one_feature_tables_and_unconditional_models() -> None:
    df = pd.DataFrame({"v": np.linspace(0, 1, 30), "y": ["a", "b", "c"] * 10})
    model = TabularFlow.from_frame(df, label="y", depth=2, hidden=8, coupling="affine")
    x, y = model.encode_frame(df)
    assert x.shape == (30, 1) and torch.isfinite(model.log_prob(x, y)).all()
    assert model.sample_frame(3, seed=0)["y"].tolist() == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    plain = TabularFlow.from_frame(df.drop(columns="y"), depth=1, hidden=8)
    out = plain.sample_frame(5, seed=0)
    assert list(out.columns) == ["v"] and len(out) == 5 and plain.num_classes == 0
    with pytest.raises(ValueError, match="unconditional"):
        plain.sample_frame({"a": 2})
    with pytest.raises(ValueError, match="nothing to model"):
        TabularFlow.from_frame(pd.DataFrame({"c": [1.0] * 4, "y": [0, 1, 0, 1]}), label="y")


def test_log_prob_is_finite_and_logdet_consistent_after_dequantization(frame_model) -> None:
    df, model = frame_model
    x, y = model.encode_frame(df, seed=0)
    bpd = model.nll_bits_per_dim(x, y)
    assert bpd.shape == (60,) and torch.isfinite(bpd).all()
    torch.testing.assert_close(
        bpd, -model.log_prob(model.prepare_batch(x), y) / (7 * math.log(2)), rtol=0.5, atol=5.0
    )


def _moons_gain(n: int, steps: int, depth: int, hidden: int) -> tuple[float, float]:
    """Held-out bits/dim of a class-conditional flow on two moons: (at init, after training)."""
    from sklearn.datasets import make_moons

    from flowaug.training import FlowTrainer, TrainConfig

    x, y = make_moons(2 * n, noise=0.05, random_state=0)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    train, val = (x[:n], y[:n]), (x[n:], y[n:])
    torch.manual_seed(0)
    model = TabularFlow(2, 2, depth=depth, hidden=hidden, bins=8)
    model.initialize(*train)

    def val_bpd() -> float:
        with torch.no_grad():
            return float(model.eval().nll_bits_per_dim(*val).mean())

    before = val_bpd()
    config = TrainConfig(
        batch_size=64,
        lr=3e-3,
        max_steps=steps,
        warmup_steps=0,
        eval_every=max(steps // 10, 1),
        progress=False,
        cpu=True,
    )
    FlowTrainer(model, config).fit(train, val)
    return before, val_bpd()


def test_training_learns_beyond_the_gaussian_start() -> None:
    before, after = _moons_gain(n=300, steps=150, depth=2, hidden=16)
    assert after < before - 0.1, (before, after)


@pytest.mark.slow
def test_training_fits_two_moons_well() -> None:
    before, after = _moons_gain(n=1000, steps=1500, depth=4, hidden=32)
    assert after < before - 0.6, (before, after)


@pytest.mark.parametrize(
    "module", ["flowaug.flows.tabular", "flowaug.tabular.model", "flowaug.tabular.encoder"]
)
def test_docstring_examples_run(module) -> None:
    import doctest
    import importlib

    assert doctest.testmod(importlib.import_module(module)).failed == 0


def test_flows_layer_holds_the_tensor_model_and_tabular_the_frame_model() -> None:
    import flowaug
    import flowaug.flows
    from flowaug.flows.tabular import FeatureFlow

    assert issubclass(TabularFlow, FeatureFlow) and flowaug.TabularFlow is TabularFlow
    assert not hasattr(flowaug.flows, "TabularFlow")  # the model layer holds no pandas model
    assert not hasattr(FeatureFlow(3, 2, depth=1), "encode_frame")


def test_the_flow_layer_imports_no_pandas() -> None:
    import ast
    from pathlib import Path

    import flowaug.flows

    for path in Path(flowaug.flows.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        modules = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        modules += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        assert not [m for m in modules if m.split(".")[0] == "pandas"], path.name
