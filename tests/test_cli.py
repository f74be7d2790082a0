"""The ``flowaug`` command: help for every subcommand, and tiny fit / sample / augment /
evaluate / quickstart runs."""

from __future__ import annotations

import json
import os

import datasets
import numpy as np
import pytest
from PIL import Image

import flowaug
from flowaug import cli
from flowaug.cli import COMMANDS, build_parser, command, main
from flowaug.data import load_sklearn, to_hf_dataset

TINY_FIT = ["--steps", "4", "--eval-every", "2", "--batch-size", "32", "--no-progress"]
TINY_MODEL = ["--depth", "1", "--hidden", "8"]


def test_top_level_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ("quickstart", "fit", "sample", "augment", "generate", "evaluate"):
        assert name in out


@pytest.mark.parametrize("name", ["quickstart", "fit", "sample", "augment", "generate", "evaluate"])
def test_each_subcommand_has_help(capsys, name):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: flowaug {name}")
    assert "--seed" in out


def test_missing_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2


def test_commands_register_through_the_registry(capsys):
    seen = {}

    def arguments(parser):
        parser.add_argument("--value", type=int, required=True)

    @command("echo-test", help="test command", arguments=arguments)
    def run(args):
        seen["value"] = args.value
        return 3

    try:
        assert "echo-test" in build_parser().format_help()
        assert main(["echo-test", "--value", "7"]) == 3 and seen == {"value": 7}
        with pytest.raises(ValueError, match="already registered"):
            command("echo-test", help="again", arguments=arguments)(run)
    finally:
        COMMANDS.pop("echo-test", None)


def test_fit_then_sample(tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["fit", "--data", "sklearn:digits", "--out", str(out), *TINY_FIT, *TINY_MODEL]) == 0
    for name in ("config.json", "model.safetensors", "history.json", "training_curve.png"):
        assert (out / name).is_file(), name
    model = flowaug.load(out)
    assert model.class_names == [str(i) for i in range(10)] and model.config["depth"] == 1
    history = json.loads((out / "history.json").read_text())
    assert [r["step"] for r in history["records"]] == [2, 4]
    assert "best validation bits/dim" in capsys.readouterr().out

    grid, saved = tmp_path / "grid.png", tmp_path / "samples.npz"
    args = ["sample", str(out), "--n", "3", "--grid", str(grid), "--save", str(saved)]
    assert main([*args, "--seed", "1"]) == 0
    with Image.open(grid) as img:
        assert img.width > 50 and img.height > 100
    first = np.load(saved)
    assert first["x"].shape == (30, 1, 8, 8) and first["x"].dtype == np.int64
    assert first["x"].min() >= 0 and first["x"].max() <= 16
    assert first["y"].tolist() == [c for c in range(10) for _ in range(3)]
    assert main([*args, "--seed", "1"]) == 0
    assert np.array_equal(np.load(saved)["x"], first["x"])  # same seed, same samples


def test_fit_reads_an_image_folder(tmp_path):
    write_image_folder(tmp_path / "images", 8)
    out = tmp_path / "model"
    args = ["fit", "--data", str(tmp_path / "images"), "--out", str(out), "--val-fraction", "0"]
    assert main([*args, "--steps", "2", "--batch-size", "4", "--no-progress", *TINY_MODEL]) == 0
    model = flowaug.load(out)
    assert model.class_names == ["cats", "dogs"] and model.levels == 256


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["fit", "--data", "/no/such/dir", "--out", "x"], "no such file"),
        (["fit", "--data", "sklearn:nope", "--out", "x"], "choose one of"),
        (["sample", "/no/such/model"], "not a directory"),
        (["augment", "/no/such/model", "--data", "sklearn:digits", "--out", "x"], "not a dir"),
        (["augment", "m", "--data", "sklearn:digits", "--out", "x", "--ratio", "-1"], "--ratio"),
        (["augment", "m", "--data", "sklearn:digits", "--out", "x", "--ratio", "nan"], "--ratio"),
        (["evaluate", "/no/such/model", "--data", "sklearn:digits"], "not a directory"),
        (["evaluate", "m", "--data", "sklearn:digits", "--n-per-class", "0"], "--n-per-class"),
        # checked before any training, so nothing is written
        (["quickstart", "--out", "qs-never", "--temperature", "-1"], "temperature must be"),
        (["fit", "--data", "sklearn:digits", "--out", "x", "--val-fraction", "1"], "[0, 1)"),
        (["fit", "--data", "sklearn:digits", "--out", "x", "--levels", "5"], "own levels (17)"),
        (["fit", "--data", "sklearn:digits", "--out", "x", "--resume"], "--checkpoint-every"),
        (
            ["augment", "m", "--data", "sklearn:digits", "--out", "x", "--filter-threshold", "2"],
            "filter_threshold must be in [0, 1)",
        ),
    ],
)
def test_errors_are_reported_without_a_traceback(capsys, argv, fragment):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"flowaug {argv[0]}: error:") and fragment in err
    assert len(err.strip().splitlines()) == 1  # one line, no traceback


@pytest.mark.parametrize("name", ["quickstart", "fit"])
def test_a_finished_output_is_never_replaced_without_overwrite(tmp_path, capsys, name):
    out = tmp_path / "done"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"a finished model")
    argv = [name, "--out", str(out), "--steps", "1", "--no-progress"]
    if name == "fit":
        argv += ["--data", "sklearn:iris"]
    assert main(argv) == 1
    assert "pass --overwrite" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == b"a finished model"


def test_fit_never_writes_inside_its_data(tmp_path, capsys):
    images = write_image_folder(tmp_path / "images", 4)
    assert main(["fit", "--data", str(images), "--out", str(images / "model")]) == 1
    assert "lies inside --data" in capsys.readouterr().err
    assert not (images / "model").exists()


def write_image_folder(root, n, size=(8, 8)):
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / ("cats" if i % 2 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.mark.parametrize("problem", ["size", "corrupt", "16-bit"])
def test_bad_image_files_are_named_in_one_line(tmp_path, capsys, problem):
    images = write_image_folder(tmp_path / "images", 4)
    bad = images / "cats" / "bad.png"
    if problem == "size":
        Image.fromarray(np.zeros((16, 12), dtype=np.uint8)).save(bad)
    elif problem == "corrupt":
        bad.write_bytes(b"not a png")
    else:
        Image.fromarray(np.full((8, 8), 1000, dtype=np.uint16)).save(bad)
    assert main(["fit", "--data", str(images), "--out", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and len(err.strip().splitlines()) == 1


def test_fit_on_fewer_images_than_the_default_batch(tmp_path):
    images = write_image_folder(tmp_path / "images", 6)  # 5 training images after the split
    out = tmp_path / "model"
    assert (
        main(
            [
                "fit",
                "--data",
                str(images),
                "--out",
                str(out),
                "--steps",
                "2",
                "--no-progress",
                *TINY_MODEL,
            ]
        )
        == 0
    )
    assert flowaug.load(out).class_names == ["cats", "dogs"]


def test_sample_reports_the_files_it_wrote(tmp_path, capsys, digits_model):
    argv = ["sample", str(digits_model), "--n", "1", "--grid", str(tmp_path / "g")]
    assert main([*argv, "--save", str(tmp_path / "deep" / "s")]) == 0
    out = capsys.readouterr().out
    assert f"-> {tmp_path / 'g.png'}" in out and f"-> {tmp_path / 'deep' / 's.npz'}" in out
    assert (tmp_path / "g.png").is_file() and (tmp_path / "deep" / "s.npz").is_file()


def test_quickstart_end_to_end_with_few_steps(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(cli.QUICKSTART_MODEL, "depth", 1)
    monkeypatch.setitem(cli.QUICKSTART_MODEL, "hidden", 8)
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--steps", "3", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "1068 train / 189 validation / 540 test" in printed
    assert "test bits/dim" in printed
    for name in ("config.json", "model.safetensors", "samples.png", "training_curve.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and 0 < metrics["test_bpd"] < 10


# --- augment and evaluate ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """A tiny Glow fitted to scikit-learn digits (17 levels) in a few steps."""
    out = tmp_path_factory.mktemp("cli") / "model"
    assert main(["fit", "--data", "sklearn:digits", "--out", str(out), *TINY_FIT, *TINY_MODEL]) == 0
    return out


@pytest.fixture(scope="module")
def small_digits(tmp_path_factory):
    """60 digits saved with save_to_disk: 8-bit PIL images and a ClassLabel column."""
    path = tmp_path_factory.mktemp("cli") / "digits60"
    to_hf_dataset(load_sklearn("digits")).select(range(60)).save_to_disk(str(path))
    return path


def _synthetic_pixels(ds, start):
    return np.stack([np.asarray(img) for img in ds.select(range(start, len(ds)))["image"]])


def test_augment_then_evaluate(tmp_path, capsys, digits_model, small_digits):
    real = datasets.load_from_disk(str(small_digits))
    files_before = sorted(os.listdir(small_digits))
    out = tmp_path / "aug"
    common = ["augment", str(digits_model), "--data", str(small_digits), "--out", str(out)]
    args = [*common, "--ratio", "0.5", "--seed", "3", "--no-progress"]
    assert main([*args, "--cache-dir", str(tmp_path / "cache")]) == 0
    printed = capsys.readouterr().out

    aug = datasets.load_from_disk(str(out))
    assert aug.features == datasets.Features(
        {**real.features, "is_synthetic": datasets.Value("bool")}
    )
    labels = np.asarray(real["label"])
    expected = {c: round(0.5 * int((labels == c).sum())) for c in range(10)}
    n_real, n_syn = len(real), sum(expected.values())
    assert len(aug) == n_real + n_syn and n_syn > 0
    flags, aug_labels = np.asarray(aug["is_synthetic"]), np.asarray(aug["label"])
    assert not flags[:n_real].any() and flags[n_real:].all()
    assert aug_labels[:n_real].tolist() == labels.tolist()
    assert {c: int((aug_labels[n_real:] == c).sum()) for c in range(10)} == expected
    image = aug[n_real]["image"]
    assert image.mode == "L" and image.size == (8, 8)
    pixels = _synthetic_pixels(aug, n_real)
    assert set(np.unique(pixels).tolist()) <= {round(k * 255 / 16) for k in range(17)}
    assert f"{n_real + n_syn} rows ({n_real} real, {n_syn} synthetic)" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aug", "cache"]  # no temp folders

    # an existing output is kept unless --overwrite; the same seed gives the same rows
    assert main(args) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--cache-dir", str(tmp_path / "cache2")]) == 0
    assert np.array_equal(_synthetic_pixels(datasets.load_from_disk(str(out)), n_real), pixels)
    cache3 = ["--cache-dir", str(tmp_path / "cache3")]
    assert main([*common, "--n-per-class", "2", "--overwrite", "--no-progress", *cache3]) == 0
    assert len(datasets.load_from_disk(str(out))) == n_real + 20
    assert main([*args[:5], str(small_digits), "--overwrite"]) == 1  # never replaces --data
    assert "would replace --data" in capsys.readouterr().err
    assert sorted(os.listdir(small_digits)) == files_before

    report_path = tmp_path / "report.json"
    evaluate = ["evaluate", str(digits_model), "--data", str(out), "--n-per-class", "4"]
    assert main([*evaluate, "--json", str(report_path)]) == 0
    printed = capsys.readouterr().out
    assert "bits/dim (discrete, 17 levels)" in printed and "near-copies" in printed
    report = json.loads(report_path.read_text())
    for key in ("bits_per_dim", "classifier_accuracy", "per_class_accuracy", "memorization"):
        assert key in report, key
    assert report["n_rows"] == n_real and report["skipped_synthetic_rows"] == 20
    assert report["bits_per_dim_kind"] == "discrete" and report["levels"] == 17
    assert report["requantized_from_levels"] == 256
    assert 0 < report["bits_per_dim"] < 8  # uniform over 17 levels: log2(17) = 4.09
    assert 0 <= report["classifier_accuracy"] <= 1
    assert set(report["per_class_accuracy"]) <= {str(c) for c in range(10)}
    memo = report["memorization"]
    assert (memo["n_synthetic"], memo["n_train"], memo["dim"]) == (40, n_real, 64)
    assert 0 <= memo["share_near_copies"] <= 1 and memo["dcr"]["median"] > 0
    assert 0 <= report["synthetic"]["label_agreement"] <= 1
    assert 0 <= report["fidelity"]["precision"] <= 1 and 0 <= report["fidelity"]["recall"] <= 1

    again = tmp_path / "again.json"
    assert main([*evaluate, "--json", str(again)]) == 0
    second = json.loads(again.read_text())
    report.pop("seconds"), second.pop("seconds")
    assert second == report  # same seed, same report


def test_augment_writes_an_image_folder_that_reads_back(
    tmp_path, capsys, digits_model, small_digits
):
    import torch
    from torchvision.datasets import ImageFolder

    from flowaug.data import load_image_folder

    real = datasets.load_from_disk(str(small_digits))
    labels = np.asarray(real["label"])
    out = tmp_path / "folder"
    argv = ["augment", str(digits_model), "--data", str(small_digits), "--out", str(out),
            "--format", "imagefolder", "--n-per-class", "3", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"{60 + 30} PNG files (60 real-*.png, 30 synthetic-*.png) in 10 class folders" in printed
    names = [str(d) for d in range(10)]
    assert sorted(p.name for p in out.iterdir()) == names
    for c, name in enumerate(names):
        files = sorted(p.name for p in (out / name).iterdir())
        real_files = [f for f in files if f.startswith("real-")]
        synthetic_files = [f for f in files if f.startswith("synthetic-")]
        assert len(real_files) == int((labels == c).sum()) and len(synthetic_files) == 3
        assert len(real_files) + len(synthetic_files) == len(files)
        # real files are named by their row in --data
        assert real_files == [f"real-{i:06d}.png" for i in np.flatnonzero(labels == c)]

    back = load_image_folder(out)
    assert back.class_names == names and back.levels == 256
    assert list(back.x.shape) == [90, 1, 8, 8]
    files = sorted(out.rglob("*.png"))
    is_real = np.asarray([f.name.startswith("real-") for f in files])
    assert is_real.sum() == 60
    # real rows come back pixel for pixel; synthetic ones on the model's 17 levels, 8-bit
    by_row = {int(f.stem.split("-")[1]): k for k, f in enumerate(files) if f.name.startswith("r")}
    for i, image in enumerate(real["image"]):
        assert np.array_equal(back.x[by_row[i], 0].numpy(), np.asarray(image)), i
        assert int(back.y[by_row[i]]) == labels[i]
    synthetic_pixels = back.x[torch.as_tensor(~is_real)].unique().tolist()
    assert set(synthetic_pixels) <= {round(k * 255 / 16) for k in range(17)}
    folder = ImageFolder(str(out))
    assert folder.classes == names and len(folder) == 90
    assert folder[0][0].size == (8, 8)

    # an image folder output is kept unless --overwrite, then swapped as a whole
    assert main(argv) == 1
    assert "--overwrite" in capsys.readouterr().err
    argv[argv.index("3")] = "1"
    assert main([*argv, "--overwrite"]) == 0
    capsys.readouterr()
    assert len(list(out.rglob("synthetic-*.png"))) == 10 and len(list(out.rglob("*.png"))) == 70
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]  # no staging folders left


def test_augment_refuses_an_image_folder_of_a_table(tmp_path, capsys):
    model = tmp_path / "iris"
    assert main(["fit", "--data", "sklearn:iris", "--out", str(model), *TINY_FIT, *TINY_MODEL]) == 0
    capsys.readouterr()
    out = tmp_path / "folder"
    argv = ["augment", str(model), "--data", "sklearn:iris", "--out", str(out),
            "--format", "imagefolder", "--no-progress"]
    assert main(argv) == 1
    _one_line_error(capsys, "augment", "--format imagefolder writes images")
    assert not out.exists()


def test_image_folder_class_names_must_be_folder_names():
    from flowaug.hf import class_folder_names

    assert class_folder_names(["cat", "dog"]) == ["cat", "dog"]
    for bad in (["a/b"], [".hidden"], [""], ["Cat", "cat"]):
        with pytest.raises(ValueError, match="class name"):
            class_folder_names(bad)


def test_evaluate_a_tabular_model(tmp_path, capsys):
    out = tmp_path / "iris"
    assert main(["fit", "--data", "sklearn:iris", "--out", str(out), *TINY_FIT, *TINY_MODEL]) == 0
    report_path = tmp_path / "report.json"
    args = ["evaluate", str(out), "--data", "sklearn:iris", "--n-per-class", "5"]
    assert main([*args, "--json", str(report_path)]) == 0
    assert "bits/dim (continuous)" in capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert report["bits_per_dim_kind"] == "continuous" and report["n_rows"] == 150
    assert report["memorization"]["dim"] == 4 and report["memorization"]["n_synthetic"] == 15
    assert np.isfinite(report["bits_per_dim"])


def test_a_fitted_table_samples_to_csv_and_augments(tmp_path, capsys):
    # fit -> sample -> augment on a table: the model learns column encoders from the same
    # columns `augment --data` reads
    import pandas as pd

    model = tmp_path / "wine"
    assert main(["fit", "--data", "sklearn:wine", "--out", str(model), *TINY_FIT, *TINY_MODEL]) == 0
    assert main(["sample", str(model), "--n", "4", "--csv", str(tmp_path / "rows.csv")]) == 0
    rows = pd.read_csv(tmp_path / "rows.csv")
    features = list(load_sklearn("wine").feature_names)
    assert list(rows.columns) == [*features, "label"] and len(rows) == 12
    assert rows["label"].value_counts().to_dict() == {0: 4, 1: 4, 2: 4}
    out = tmp_path / "aug"
    argv = ["augment", str(model), "--data", "sklearn:wine", "--out", str(out)]
    assert main([*argv, "--n-per-class", "5", "--no-progress"]) == 0
    aug = datasets.load_from_disk(str(out))
    assert aug.num_rows == 178 + 15 and sum(aug["is_synthetic"]) == 15
    assert list(aug.features) == [*features, "label", "is_synthetic"]
    capsys.readouterr()


def test_generate_writes_shards_and_a_rerun_writes_nothing(
    tmp_path, capsys, digits_model, small_digits
):
    from flowaug.hf import load_synthetic_shards

    out = tmp_path / "synthetic"
    argv = ["generate", str(digits_model), "--like", str(small_digits), "--out", str(out)]
    argv += ["--n-per-class", "7", "--rows-per-shard", "20", "--seed", "1", "--no-progress"]
    assert main(argv) == 0
    assert "70 synthetic rows in Parquet shards" in capsys.readouterr().out
    synthetic = load_synthetic_shards(out)
    real = datasets.load_from_disk(str(small_digits))
    assert synthetic.features == datasets.Features(
        {**real.features, "is_synthetic": datasets.Value("bool")}
    )
    assert synthetic["label"] == [c for c in range(10) for _ in range(7)]
    shards = sorted(out.glob("shard-*.parquet"))
    assert len(shards) == 4
    stamps = [f.stat().st_mtime_ns for f in shards]
    assert main(argv) == 0
    assert [f.stat().st_mtime_ns for f in shards] == stamps
    # another request into the same folder is refused, with the reason
    assert main([*argv[:-2], "2", "--no-progress"]) == 1
    assert "different request" in capsys.readouterr().err


def test_fit_with_unlabelled_images_and_init(tmp_path, capsys):
    labelled = write_image_folder(tmp_path / "images", 8)
    pool = tmp_path / "pool"
    pool.mkdir()
    rng = np.random.default_rng(1)
    for i in range(12):  # images directly in the folder: unlabelled
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(pool / f"{i}.png")
    common = ["--val-fraction", "0", "--steps", "3", "--batch-size", "4", "--no-progress"]
    out = tmp_path / "semi"
    argv = ["fit", "--data", str(labelled), "--unlabelled", str(pool), "--out", str(out)]
    assert main([*argv, *common, *TINY_MODEL]) == 0
    assert "8 train / 0 validation samples of shape [1, 8, 8], 2 classes, 12 unlabelled" in (
        capsys.readouterr().out
    )
    unconditional = tmp_path / "unconditional"
    argv = ["fit", "--data", str(pool), "--out", str(unconditional), *common, *TINY_MODEL]
    assert main(argv) == 0 and flowaug.load(unconditional).num_classes == 0
    tuned = tmp_path / "tuned"
    argv = ["fit", "--data", str(labelled), "--init", str(unconditional), "--out", str(tuned)]
    assert main([*argv, *common]) == 0
    model = flowaug.load(tuned)
    assert model.num_classes == 2 and model.class_names == ["cats", "dogs"]
    assert main([*argv, *common, "--overwrite", "--depth", "2"]) == 1
    assert "--init starts from a fitted model" in capsys.readouterr().err


# --- never a garbage row: damaged models and non-finite samples --------------------------------


@pytest.fixture(scope="module")
def nan_model(tmp_path_factory, digits_model):
    """The digits model with one NaN weight, saved consistently (its hash matches)."""
    model = flowaug.load(digits_model)
    with __import__("torch").no_grad():
        model.prior.base[0] = float("nan")
    out = tmp_path_factory.mktemp("cli") / "nan-model"
    model.save_pretrained(out)
    return out


def _one_line_error(capsys, name: str, fragment: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith(f"flowaug {name}: error:") and fragment in err, err
    assert len(err.strip().splitlines()) == 1  # one line, no traceback


@pytest.mark.parametrize("name", ["sample", "augment", "generate", "evaluate"])
def test_a_model_with_nan_weights_is_refused_by_every_command(
    tmp_path, capsys, nan_model, small_digits, name
):
    out = str(tmp_path / "out")
    argv = {
        "sample": ["sample", str(nan_model), "--grid", str(tmp_path / "g.png")],
        "augment": ["augment", str(nan_model), "--data", str(small_digits), "--out", out],
        "generate": ["generate", str(nan_model), "--like", str(small_digits), "--out", out],
        "evaluate": ["evaluate", str(nan_model), "--data", str(small_digits)],
    }[name]
    if name == "generate":
        argv += ["--n-per-class", "2"]
    assert main(argv) == 1
    _one_line_error(capsys, name, "tensor 'prior.base' holds 1 NaN")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["sample", "sample-table", "augment", "generate"])
def test_non_finite_samples_are_never_written(tmp_path, capsys, digits_model, small_digits, name):
    hot = ["--temperature", "1e300"]  # finite, but the latent overflows float32
    out = str(tmp_path / "out")
    if name == "sample-table":
        table = tmp_path / "iris"
        fit = ["fit", "--data", "sklearn:iris", "--out", str(table), *TINY_FIT, *TINY_MODEL]
        assert main(fit) == 0
        capsys.readouterr()
        argv, name = ["sample", str(table), "--csv", out], "sample"
    else:
        argv = {
            "sample": ["sample", str(digits_model), "--grid", out],
            "augment": ["augment", str(digits_model), "--data", str(small_digits), "--out", out],
            "generate": ["generate", str(digits_model), "--like", str(small_digits), "--out", out],
        }[name]
        argv += ["--n-per-class", "2"] if name == "generate" else []
    assert main([*argv, *hot, *(["--no-progress"] if name != "sample" else [])]) == 1
    _one_line_error(capsys, name, "NaN or infinite values; nothing was written")
    if name == "generate":  # the request's manifest, no shard
        assert [p.name for p in (tmp_path / "out").iterdir()] == ["flowaug_shards.json"]
    else:
        assert not os.path.exists(out)


@pytest.mark.parametrize("name", ["augment", "evaluate"])
def test_a_table_of_other_columns_is_refused(tmp_path, capsys, name):
    # `flowaug augment wine-model --data sklearn:iris` wrote rows of NaN features
    model = tmp_path / "wine"
    assert main(["fit", "--data", "sklearn:wine", "--out", str(model), *TINY_FIT, *TINY_MODEL]) == 0
    capsys.readouterr()
    argv = [name, str(model), "--data", "sklearn:iris"]
    argv += ["--out", str(tmp_path / "aug"), "--no-progress"] if name == "augment" else []
    assert main(argv) == 1
    _one_line_error(capsys, name, "does not have the model's columns: missing ['alcohol'")
    assert not (tmp_path / "aug").exists()


@pytest.mark.parametrize("name", ["sample", "sample-table", "augment", "generate"])
def test_absurd_counts_are_refused_in_one_line_with_an_estimate(
    tmp_path, capsys, digits_model, small_digits, name
):
    huge, out = str(10**13), str(tmp_path / "out")
    model = digits_model
    if name == "sample-table":
        model = tmp_path / "iris"
        fit = ["fit", "--data", "sklearn:iris", "--out", str(model), *TINY_FIT, *TINY_MODEL]
        assert main(fit) == 0
        capsys.readouterr()
    argv = {
        "sample": ["sample", str(model), "--n", huge, "--grid", out],
        "sample-table": ["sample", str(model), "--n", huge, "--csv", out],
        "augment": ["augment", str(model), "--data", str(small_digits), "--out", out,
                    "--n-per-class", huge, "--no-progress"],
        "generate": ["generate", str(model), "--like", str(small_digits), "--out", out,
                     "--n-per-class", huge, "--no-progress"],
    }[name]
    assert main(argv) == 1
    err = capsys.readouterr().err
    flag = "--n" if name.startswith("sample") else "n_per_class"
    assert err.startswith(f"flowaug {argv[0]}: error: {flag}={huge} (") and "needs about" in err
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    assert not os.path.exists(out) or not any(os.scandir(out))


def test_a_kill_after_training_still_leaves_a_complete_model(tmp_path, monkeypatch):
    # the trainer's save was once followed by the CLI's own (with class_names): a kill between
    # the two left a model whose class_names were None
    from flowaug.training import FlowTrainer

    real_fit = FlowTrainer.fit

    def fit_then_killed(self, *args, **kwargs):
        real_fit(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(FlowTrainer, "fit", fit_then_killed)
    out = tmp_path / "model"
    # main turns a stray Ctrl-C into one line and exit code 130
    argv = ["fit", "--data", "sklearn:digits", "--out", str(out), *TINY_FIT, *TINY_MODEL]
    assert main(argv) == 130
    assert flowaug.load(out).class_names == [str(d) for d in range(10)]


def test_resume_from_a_chosen_checkpoint_when_the_newest_is_corrupt(tmp_path, capsys):
    out = tmp_path / "model"
    fit = ["fit", "--data", "sklearn:digits", "--out", str(out), "--checkpoint-every", "2",
           *TINY_FIT, *TINY_MODEL]
    assert main(fit) == 0
    weights = out / "checkpoints" / "step_00000004" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])
    capsys.readouterr()
    assert main([*fit, "--resume"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "step_00000004" in err and "model.safetensors" in err
    intact = out / "checkpoints" / "step_00000002"
    assert f"--resume {intact}" in err
    assert main([*fit, "--resume", str(intact)]) == 0
    assert flowaug.load(out).class_names == [str(d) for d in range(10)]


def test_augment_overwrite_recovers_after_a_kill_between_its_renames(
    tmp_path, capsys, digits_model, small_digits
):
    out = tmp_path / "aug"
    argv = ["augment", str(digits_model), "--data", str(small_digits), "--out", str(out),
            "--n-per-class", "1", "--no-progress"]
    assert main(argv) == 0
    before = sorted(p.name for p in out.iterdir())
    # what a kill between the renames of the fallback (no atomic swap) leaves: the previous
    # output renamed aside by a process that is gone, and the half-written new one
    out.rename(tmp_path / ".aug.old-999999999-0badf00d")
    (tmp_path / ".aug.tmp-999999999-0badf00d").mkdir()
    assert main([*argv, "--n-per-class", "2", "--overwrite"]) == 0
    assert "restored" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aug"]
    assert sorted(p.name for p in out.iterdir()) == before
    assert len(datasets.load_from_disk(str(out))) == 60 + 20


def test_evaluate_real_per_class_trains_the_check_on_k_rows(tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["fit", "--data", "sklearn:digits", "--out", str(out), *TINY_FIT, *TINY_MODEL]) == 0
    report = tmp_path / "report.json"
    argv = ["evaluate", str(out), "--data", "sklearn:digits", "--n-per-class", "5",
            "--no-progress", "--json", str(report)]
    assert main([*argv, "--real-per-class", "3"]) == 0
    checks = json.loads(report.read_text())["classifier_checks"]
    assert checks["real_per_class"] == 3 and checks["n_real_train"] == 30
    assert "classifier on real rows (30)" in capsys.readouterr().out
    assert main([*argv, "--real-per-class", "0"]) == 1
    assert "--real-per-class must be >= 1" in capsys.readouterr().err
