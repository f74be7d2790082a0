"""Kills at the worst moment of a write: the output folder swap, checkpoint pruning, temporary
files left by killed writes. Each kill is a real SIGKILL of a subprocess, or a file-system
call made to fail where a kill would land."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import flowaug
import flowaug.training.checkpoint as checkpoints_module
from flowaug import FlowTrainer, Glow, TrainConfig
from flowaug.data import load_sklearn
from flowaug.io.folders import _exchange, recover_folder, replace_folder, staging_folder
from flowaug.training.checkpoint import list_checkpoints

ROOT = Path(__file__).resolve().parents[1]


def _run_killed(script: str) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh interpreter; it is expected to SIGKILL itself."""
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True
    )


def _two_folders(tmp_path: Path) -> tuple[Path, Path]:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    new = staging_folder(out)
    (new / "new.txt").write_text("new")
    return new, out


def _kill_at(setup: str, new: Path, out: Path) -> str:
    """A script that patches ``flowaug.io.folders`` with ``setup``, then replaces ``out``."""
    head = "import os, signal\nfrom pathlib import Path\nimport flowaug.io.folders as rd\n"
    call = f"rd.replace_folder(Path({str(new)!r}), Path({str(out)!r}))\nprint('not killed')\n"
    return head + textwrap.dedent(setup) + call


def test_a_kill_between_the_two_renames_is_undone_by_the_rerun(tmp_path):
    # the fallback where the system cannot swap folders: out is renamed aside, then the new
    # folder into place; a kill between the two leaves no out, until a rerun recovers
    new, out = _two_folders(tmp_path)
    setup = """
    rd._exchange = lambda a, b: False
    calls = []
    real = rd._rename
    def rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        real(src, dst)
    rd._rename = rename
    """
    done = _run_killed(_kill_at(setup, new, out))
    assert done.returncode == -9, done.stderr
    assert not out.exists()
    assert "restored" in recover_folder(out)
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the half-done new is gone


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux only")
def test_the_swap_leaves_the_old_or_the_new_output_at_every_moment(tmp_path):
    new, out = _two_folders(tmp_path)
    probe_a, probe_b = tmp_path / "a", tmp_path / "b"
    probe_a.mkdir(), probe_b.mkdir()
    if not _exchange(probe_a, probe_b):
        pytest.skip("this file system cannot swap folders")
    shutil.rmtree(probe_a), shutil.rmtree(probe_b)
    # killed while deleting the old output, after the swap
    setup = """
    def rmtree(path, ignore_errors=False):
        os.kill(os.getpid(), signal.SIGKILL)
    rd.shutil.rmtree = rmtree
    """
    done = _run_killed(_kill_at(setup, new, out))
    assert done.returncode == -9, done.stderr
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert recover_folder(out) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_replace_folder_without_a_kill(tmp_path):
    new, out = _two_folders(tmp_path)
    replace_folder(new, out)
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --- training ----------------------------------------------------------------------------------
TINY = dict(image_shape=(1, 8, 8), num_classes=10, depth=1, hidden=8, levels=17)


@pytest.fixture(scope="module")
def digits():
    return load_sklearn("digits").subset(range(64))


def _trainer(out: Path, **overrides) -> FlowTrainer:
    torch.manual_seed(0)
    settings = dict(
        batch_size=16, max_steps=8, eval_every=4, warmup_steps=2, progress=False,
        output_dir=str(out), checkpoint_every=2, keep_checkpoints=1,
    )
    return FlowTrainer(Glow(**TINY), TrainConfig(**{**settings, **overrides}))


class Killed(BaseException):
    pass


def test_a_checkpoint_killed_while_pruned_is_never_listed_as_complete(
    tmp_path, digits, monkeypatch
):
    real = shutil.rmtree

    def half_rmtree(path, ignore_errors=False):
        path = Path(path)
        if "step_00000002" in path.name:  # deletes the weights, then the process is killed
            (path / "model.safetensors").unlink()
            raise Killed
        real(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(checkpoints_module.shutil, "rmtree", half_rmtree)
    with pytest.raises(Killed):
        _trainer(tmp_path).fit(digits)
    monkeypatch.setattr(checkpoints_module.shutil, "rmtree", real)
    listed = list_checkpoints(tmp_path / "checkpoints")
    assert [p.name for p in listed] == ["step_00000004"]
    assert all((p / "model.safetensors").is_file() for p in listed)
    history = _trainer(tmp_path).fit(digits, resume_from="latest")  # and the run resumes
    assert history.records[-1]["step"] == 8


def test_temporary_files_of_killed_writes_are_cleared_by_a_resume(tmp_path, digits):
    _trainer(tmp_path, max_steps=4).fit(digits)
    for name in (".model.safetensors.k1ll3d.tmp", ".config.json.k1ll3d.tmp",
                 ".history.json.k1ll3d.tmp"):
        (tmp_path / name).write_bytes(b"half a write")  # atomic writes killed before the rename
    (tmp_path / "checkpoints" / ".tmp-step_00000006-4242").mkdir()  # a checkpoint killed mid-save
    _trainer(tmp_path, max_steps=4).fit(digits, resume_from="latest")
    assert [p for p in tmp_path.rglob(".*")] == []
    assert flowaug.load(tmp_path).num_classes == 10
    assert json.loads((tmp_path / "history.json").read_text())["steps"] == 4
