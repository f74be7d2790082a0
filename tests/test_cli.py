"""The ``flowaug`` command: help for every subcommand, and tiny fit / sample / quickstart runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import flowaug
from flowaug import cli
from flowaug.cli import COMMANDS, build_parser, command, main


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY_FIT = ["--steps", "4", "--eval-every", "2", "--batch-size", "32", "--no-progress"]
TINY_MODEL = ["--depth", "1", "--hidden", "8"]


def test_top_level_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ("quickstart", "fit", "sample"):
        assert name in out


@pytest.mark.parametrize("name", ["quickstart", "fit", "sample"])
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
    rng = np.random.default_rng(0)
    for i in range(8):
        folder = tmp_path / "images" / ("cats" if i % 2 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")
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
    ],
)
def test_errors_are_reported_without_a_traceback(capsys, argv, fragment):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"flowaug {argv[0]}: error:") and fragment in err


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
