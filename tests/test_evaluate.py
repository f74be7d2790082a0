"""flowaug.evaluate: classifier checks that can fail, the held-out record, and the CLI report."""

from __future__ import annotations

import json

import numpy as np

from flowaug.cli import main
from flowaug.data import load_sklearn
from flowaug.evaluate import classifier_checks, held_out_rows, verdict, write_split

TINY = ["--depth", "1", "--hidden", "8", "--no-progress", "--steps", "3", "--eval-every", "3"]


def _digits():
    data = load_sklearn("digits")
    x = data.x.numpy().reshape(len(data), -1) / 16.0
    return x, data.y.numpy()


def test_samples_with_wrong_labels_hurt_and_copies_of_real_rows_do_not_fool_it():
    x, y = _digits()
    rng = np.random.default_rng(0)
    train, test = np.arange(0, 300), np.arange(1000, 1400)
    noise = rng.random((500, 64))
    bad = classifier_checks(x[train], y[train], x[test], y[test], noise, rng.integers(0, 10, 500))
    assert bad["synthetic_only_accuracy"] < 0.3 < bad["real_accuracy"]
    assert bad["augmentation_gain_points"] < 0 and "hurt by" in bad["verdict"]
    more = np.arange(300, 1000)  # "synthetic" rows that are real, unseen digits: they help
    good = classifier_checks(x[train], y[train], x[test], y[test], x[more], y[more])
    assert good["synthetic_only_accuracy"] > 0.85 and "help by" in good["verdict"]


def test_verdict_reads_the_noise():
    assert "do not help" in verdict(0.4, 1.0)
    assert verdict(3.2, 1.0) == "on this data, synthetic samples help by 3.2 points"
    assert verdict(-2.0, 1.0) == "on this data, synthetic samples hurt by 2.0 points"


def test_the_held_out_record_matches_only_the_same_labels(tmp_path):
    y = np.arange(20) % 4
    write_split(tmp_path, "sklearn:x", y, [3, 7], "test")
    assert held_out_rows(tmp_path, y).tolist() == [3, 7]
    assert held_out_rows(tmp_path, y[::-1]) is None and held_out_rows(tmp_path / "no", y) is None


def test_evaluate_scores_the_rows_the_fit_held_out(tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["fit", "--data", "sklearn:digits", "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    report = tmp_path / "r.json"
    argv = ["evaluate", str(out), "--data", "sklearn:digits", "--n-per-class", "20"]
    assert main([*argv, "--json", str(report)]) == 0
    captured = capsys.readouterr()
    assert "the 180 rows the fit held out" in captured.out and "WARNING" not in captured.err
    assert "[4/4" in captured.err  # progress
    lines = captured.out.splitlines()
    assert any(line.startswith("on this data, synthetic samples ") for line in lines)
    assert "precision: the share" in captured.out and "recall: the share" in captured.out
    result = json.loads(report.read_text())
    checks = result["classifier_checks"]
    assert result["n_evaluated_rows"] == 180 and checks["n_test"] == 180
    assert checks["n_real_train"] == 1617 and checks["n_synthetic_train"] == 200
    assert checks["real_accuracy"] > 0.9  # logistic regression on digits
    # a briefly trained flow: its samples are noise, so they cannot help
    assert checks["synthetic_only_accuracy"] < 0.5 and "help by" not in checks["verdict"]


def test_evaluate_warns_loudly_on_rows_it_cannot_place(tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["fit", "--data", "sklearn:digits", "--out", str(out), *TINY]) == 0
    (out / "split.json").unlink()
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data", "sklearn:digits", "--n-per-class", "5"]) == 0
    captured = capsys.readouterr()
    assert "WARNING" in captured.err and "optimistic" in captured.err
    assert "scored on all 1797 rows" in captured.out


def test_the_library_report_and_its_one_bits_per_dim_loop():
    import torch

    import flowaug
    from flowaug.evaluate import bits_per_dim, evaluate, mean_bits_per_dim

    data = load_sklearn("digits").subset(range(200))
    config = flowaug.TrainConfig(batch_size=32, max_steps=2, eval_every=2, progress=False)
    model = flowaug.fit(data, config=config, depth=1, hidden=8)
    # the loop in batches is model.nll_bits_per_dim of the whole set with the same noise
    whole = model.nll_bits_per_dim(data.x, data.y, torch.Generator().manual_seed(5))
    batched = bits_per_dim(model, data.x, data.y, torch.Generator().manual_seed(5), batch_size=7)
    assert torch.allclose(batched, whole, atol=1e-5)
    draws = [float(bits_per_dim(model, data.x, data.y, torch.Generator().manual_seed(k)).mean())
             for k in (3, 4)]
    assert mean_bits_per_dim(model, data.x, data.y, draws=2, seed=3) == sum(draws) / 2
    lines = []
    held = np.arange(150, 200)
    report = evaluate(model, data, held_out=held, n_per_class=3, progress=lines.append)
    assert len(lines) == 4 and "the 50 rows the fit held out" in lines[0]
    assert report["n_rows"] == 200 and report["n_evaluated_rows"] == 50
    assert report["bits_per_dim_kind"] == "discrete" and report["levels"] == 17
    assert report["classifier_checks"]["n_real_train"] == 150
    assert report["memorization"]["n_synthetic"] == 30
    json.dumps(report)  # JSON-serializable
