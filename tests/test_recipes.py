"""Smoke runs of every recipe's ``main([...])`` with small settings, checking what it returns.

Recipes are scripts, not a package: each is loaded from its path with importlib. Every run takes
a few seconds on one CPU thread; the torchrun launch of ``multi_gpu.py`` is marked slow.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType

import pytest
import torch
from conftest import torchrun_two_cpu

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
NAMES = (
    "affine_1d",
    "anomaly_detection",
    "variational_inference",
    "scarce_digits",
    "semi_supervised",
    "hf_pipeline",
    "imbalanced_tabular",
    "multi_gpu",
)
_LOADED: dict[str, ModuleType] = {}


def load_recipe(name: str) -> ModuleType:
    """Import ``recipes/<name>.py`` as a module (once per session)."""
    if name not in _LOADED:
        spec = importlib.util.spec_from_file_location(f"recipe_{name}", RECIPES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _LOADED[name] = module
    return _LOADED[name]


@pytest.fixture(autouse=True)
def _one_thread():
    # the machine is shared: several threads per op only add contention at these sizes
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _in_unit_interval(value: float) -> bool:
    return math.isfinite(value) and 0.0 <= value <= 1.0


@pytest.mark.parametrize("name", NAMES)
def test_help_describes_the_run_line(name, capsys):
    module = load_recipe(name)
    assert "Run:" in module.__doc__
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "--seed" in out


def test_affine_1d_fits_the_data_mean_and_std():
    out = load_recipe("affine_1d").main(["--steps", "300", "--n", "1000"])
    assert out["fitted_mean"] == pytest.approx(out["data_mean"], abs=0.05)
    assert out["fitted_std"] == pytest.approx(out["data_std"], rel=0.05)


def test_anomaly_detection_gives_one_auc_per_outlier_kind():
    out = load_recipe("anomaly_detection").main(["--steps", "10"])
    assert set(out) == {"unseen class 9", "30% pixel noise", "inverted"}
    assert all(_in_unit_interval(auc) for auc in out.values()), out


def test_variational_inference_elbos_stay_below_log_normalizer():
    out = load_recipe("variational_inference").main(["--steps", "60"])
    assert set(out) == {"mean-field Gaussian", "flowaug TabularFlow"}
    for elbo in out.values():
        # log Z = 0: an ELBO can only exceed it by Monte Carlo error (20,000 samples)
        assert math.isfinite(elbo) and elbo < 0.05, out


def test_scarce_digits_reports_every_arm():
    recipe = load_recipe("scarce_digits")
    out = recipe.main(["--quick", "--k", "5"])
    assert tuple(out) == recipe.ARMS
    assert all(_in_unit_interval(acc) for acc in out.values()), out
    # 60 steps on 50 images already beat chance (10%) by a wide margin
    assert out["real"] > 0.3, out


def test_semi_supervised_reports_every_arm():
    recipe = load_recipe("semi_supervised")
    out = recipe.main(["--quick", "--k", "5"])
    assert sorted(out) == sorted(recipe.ARMS)
    assert all(_in_unit_interval(acc) for acc in out.values()), out
    assert out["real"] > 0.3, out


def test_scarce_digits_labelled_subset_is_k_per_class_from_the_pool():
    import numpy as np

    recipe = load_recipe("scarce_digits")
    y = np.repeat(np.arange(10), 20)
    pool = np.arange(0, 200, 2)
    picked = recipe.labelled_subset(y, pool, 3, seed=0)
    assert set(picked) <= set(pool)
    assert np.bincount(y[picked]).tolist() == [3] * 10
    assert picked.tolist() == recipe.labelled_subset(y, pool, 3, seed=0).tolist()


def test_hf_pipeline_marks_synthetic_rows(tmp_path):
    out = load_recipe("hf_pipeline").main(
        ["--quick", "--k", "10", "--ratio", "1.0", "--cache-dir", str(tmp_path)]
    )
    assert out["real_rows"] == 100 and out["synthetic_rows"] == 100
    assert out["synthetic_first_index"] == 100  # real rows first, then the synthetic ones
    assert 0.3 < out["synthetic_share_seen"] < 0.7, out
    assert _in_unit_interval(out["accuracy_real_only"])
    assert _in_unit_interval(out["accuracy_augmented"])


def test_hf_pipeline_dataset_has_image_and_class_label_features():
    import datasets
    import numpy as np

    recipe = load_recipe("hf_pipeline")
    ds = recipe.digits_dataset(np.full((3, 8, 8), 16.0), np.array([0, 1, 2]))
    assert isinstance(ds.features["image"], datasets.Image)
    assert isinstance(ds.features["label"], datasets.ClassLabel)
    row = ds.with_transform(recipe.to_tensors)[0]
    assert row["pixel_values"].shape == (1, 8, 8)
    assert row["pixel_values"].dtype == torch.float32 and float(row["pixel_values"].max()) == 1.0


def test_imbalanced_tabular_scores_each_sampler():
    recipe = load_recipe("imbalanced_tabular")
    out = recipe.main(["--quick"])
    expected = {"none", "FlowOversampler"} | ({"SMOTE"} if recipe.SMOTE is not None else set())
    assert set(out) == expected
    assert all(_in_unit_interval(score) for score in out.values()), out
    assert out["FlowOversampler"] > 0.5, out


def test_imbalanced_tabular_runs_without_imbalanced_learn(monkeypatch, capsys):
    recipe = load_recipe("imbalanced_tabular")
    monkeypatch.setattr(recipe, "SMOTE", None)
    monkeypatch.setattr(recipe, "make_pipeline", None)
    out = recipe.main(["--quick", "--dataset", "wine"])
    assert set(out) == {"none", "FlowOversampler"}
    assert "pip install imbalanced-learn" in capsys.readouterr().out


def test_imbalanced_split_keeps_the_majority_and_shrinks_the_rest():
    import numpy as np

    recipe = load_recipe("imbalanced_tabular")
    X = np.arange(400, dtype=float).reshape(200, 2)
    y = np.repeat([0, 1], [140, 60])
    X_train, X_test, y_train, y_test = recipe.imbalanced_split(X, y, 0.1, seed=0)
    assert np.bincount(y_train).tolist() == [98, 4]
    assert len(y_test) == 60
    assert not set(X_train[:, 0]) & set(X_test[:, 0])


def test_multi_gpu_one_process(tmp_path):
    import flowaug

    out = load_recipe("multi_gpu").main(["--quick", "--output-dir", str(tmp_path)])
    assert out["num_processes"] == 1 and out["steps"] == 6
    assert math.isfinite(out["test_bpd"]) and 0 < out["test_bpd"] < 8
    facts = json.loads((tmp_path / "metrics.json").read_text())
    assert facts["test_bpd"] == pytest.approx(out["test_bpd"])
    model = flowaug.load(str(tmp_path))
    assert model.num_classes == 10 and model.levels == 17


@pytest.mark.slow
def test_multi_gpu_two_cpu_processes_match_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    load_recipe("multi_gpu").main(["--quick", "--cpu", "--output-dir", str(one)])
    torchrun_two_cpu(
        str(RECIPES / "multi_gpu.py"), "--quick", "--cpu", "--output-dir", str(two), cwd=ROOT
    )
    single = json.loads((one / "metrics.json").read_text())
    multi = json.loads((two / "metrics.json").read_text())
    assert multi["num_processes"] == 2 and multi["distributed_type"].endswith("MULTI_CPU")
    # a global batch split over two ranks follows the one-process trajectory
    assert multi["test_bpd"] == pytest.approx(single["test_bpd"], abs=1e-3)
    assert multi["best_val_bpd"] == pytest.approx(single["best_val_bpd"], abs=1e-3)
