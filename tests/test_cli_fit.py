"""``flowaug fit`` around training: real signals to a real fit process, the plan printed
before it, the defaults in ``--help``, the sample grid and the default checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import flowaug
from flowaug.cli import main
from flowaug.cli.fit_plan import CHECKPOINT_AFTER_SECONDS, default_checkpoint_every
from flowaug.plots import save_sample_grid

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--depth", "1", "--hidden", "8", "--no-progress"]


def _fit_process(out: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    argv = [sys.executable, "-m", "flowaug", "fit", "--data", "sklearn:digits", "--out", str(out)]
    argv += ["--steps", "100000", "--eval-every", "5", "--batch-size", "32", *TINY, *extra]
    return subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for_validations(out: Path, process: subprocess.Popen, count: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            records = json.loads((out / "history.json").read_text())["records"]
        except (OSError, ValueError):
            records = []
        if len(records) >= count:
            return
        time.sleep(0.2)
    process.kill()
    pytest.fail("the fit wrote no validation records within 120 s")


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_the_best_weights_as_a_loadable_model(tmp_path, signum, code):
    out = tmp_path / "model"
    process = _fit_process(out)
    _wait_for_validations(out, process, 2)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == code, (stdout, stderr)
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    lines = [line for line in stdout.splitlines() if "interrupted" in line]
    assert len(lines) == 1, stdout
    name = signal.Signals(signum).name
    assert f"interrupted by {name}" in lines[0] and str(out) in lines[0]
    model = flowaug.load(out)
    assert model.class_names == [str(c) for c in range(10)]
    history = json.loads((out / "history.json").read_text())
    assert history["interrupted"] == int(signum)
    assert history["best_step"] is not None and history["best_step"] <= history["steps"]


def test_the_time_budget_stops_the_fit_and_says_so(tmp_path, capsys):
    out = tmp_path / "model"
    argv = ["fit", "--data", "sklearn:digits", "--out", str(out), "--steps", "100000"]
    assert main([*argv, "--eval-every", "5", "--max-time", "2", *TINY]) == 0
    printed = capsys.readouterr().out
    assert "time budget of 2 s reached" in printed
    assert flowaug.load(out).class_names[:2] == ["0", "1"]
    assert json.loads((out / "history.json").read_text())["steps"] < 100000


def test_fit_prints_its_plan_and_writes_a_sample_grid(tmp_path, capsys):
    out = tmp_path / "model"
    argv = ["fit", "--data", "sklearn:digits", "--out", str(out), "--steps", "4"]
    assert main([*argv, "--eval-every", "2", "--batch-size", "32", *TINY]) == 0
    printed = capsys.readouterr().out
    assert "model: Glow (depth 1" in printed
    assert "training: up to 4 steps, batch 32, learning rate 0.002" in printed
    assert "precision no" in printed and "early stopping after 5 validations" in printed
    assert "estimated time:" in printed and "s per step" in printed
    assert (out / "samples.png").is_file() and f"{out / 'samples.png'}" in printed


def test_fit_help_shows_the_real_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text
    assert "at least 500, at most 20000" in text  # --steps
    assert "clipped to [8, 64]" in text  # --batch-size
    assert "(default: 5)" in text  # --patience
    assert "--max-time" in text and "(default: no)" in text  # --mixed-precision


def test_long_fits_checkpoint_by_default():
    assert default_checkpoint_every(500, 25, CHECKPOINT_AFTER_SECONDS - 1) is None
    assert default_checkpoint_every(500, 25, CHECKPOINT_AFTER_SECONDS) == 50
    assert default_checkpoint_every(20000, 781, 3600) == 2343  # on validation steps
    assert default_checkpoint_every(30, 25, 1e6) == 25


def test_grayscale_grids_keep_the_data_s_polarity(tmp_path):
    images = np.zeros((1, 2, 1, 8, 8), dtype=np.float32)
    images[0, 0] = 1.0  # a white image next to a black one
    path = save_sample_grid(images, tmp_path / "grid.png")
    pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
    row = pixels[pixels.shape[0] // 2]
    assert row.max() > 250 and row.min() < 5
    left, right = row[: len(row) // 2], row[len(row) // 2 :]
    assert left.max() > 250 and right.min() < 5  # the white image (value 1) is drawn white


def _odd_folder(root: Path, sizes: list[tuple[int, int]]) -> Path:
    rng = np.random.default_rng(0)
    for i, size in enumerate(sizes):
        folder = root / ("cats" if i % 2 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def test_odd_sizes_name_an_option_that_exists(tmp_path, capsys):
    images = _odd_folder(tmp_path / "odd", [(15, 15)] * 6)
    assert main(["fit", "--data", str(images), "--out", str(tmp_path / "m"), *TINY]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "--image-size 16" in err and "Glow(num_scales=" not in err and "num_levels" not in err
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


def test_image_size_resizes_a_folder_of_odd_and_mixed_sizes(tmp_path, capsys):
    images = _odd_folder(tmp_path / "mixed", [(15, 15), (17, 13)] * 3)
    out = tmp_path / "m"
    argv = ["fit", "--data", str(images), "--out", str(out), "--image-size", "16"]
    assert main([*argv, "--steps", "2", *TINY]) == 0
    model = flowaug.load(out)
    assert list(model.event_shape) == [1, 16, 16] and model.class_names == ["cats", "dogs"]
    argv = ["fit", "--data", str(images), "--out", str(tmp_path / "n"), "--image-size", "7"]
    assert main(argv) == 1
    assert "--image-size must be an even number" in capsys.readouterr().err


def test_image_size_resizes_tensors_on_their_levels():
    from flowaug.data import load_sklearn
    from flowaug.data.folders import resize_images

    digits = load_sklearn("digits").subset(range(10))
    big = resize_images(digits, 16)
    assert big.x.shape == (10, 1, 16, 16) and big.x.dtype == digits.x.dtype
    assert int(big.x.max()) <= 16 and big.levels == 17
    assert resize_images(digits, 8) is digits


@pytest.mark.parametrize(
    "text, seconds",
    [("300", 300.0), ("90s", 90.0), ("5m", 300.0), ("2min", 120.0), ("1.5h", 5400.0)],
)
def test_max_time_takes_a_duration(text, seconds):
    from flowaug.cli.common import duration

    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "-5", "soon", "5 parsecs", "inf", "nan"])
def test_max_time_refuses_what_is_not_a_duration(text, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--data", "digits", "--out", "unused", "--max-time", text])
    assert stop.value.code == 2
    assert "expected a duration such as 300, 90s, 5m or 1.5h" in capsys.readouterr().err
