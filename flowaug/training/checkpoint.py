"""Checkpoint folders of a training run: listing, integrity, and deletion that a kill cannot
leave half done.

A checkpoint is a folder ``output_dir/checkpoints/step_NNNNNNNN`` whose ``trainer_state.json``
(written last) records the SHA-256 of its safetensors files; a folder without it, or any hidden
``.tmp-step_*`` folder, is never taken for one. A folder is discarded by renaming it to such a
hidden name first, so a kill during the deletion leaves a temporary folder (cleared by the next
save) instead of a damaged checkpoint that still lists as complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "check_intact",
    "checkpoint_damage",
    "clear_stale_checkpoints",
    "discard_checkpoint",
    "flatten_optimizer_state",
    "latest_checkpoint",
    "list_checkpoints",
    "read_trainer_state",
    "unflatten_optimizer_state",
]

_CHECKPOINT_RE = re.compile(r"^step_(\d+)$")


def flatten_optimizer_state(state_dict: dict[str, Any]) -> dict[str, Tensor]:
    flat = {}
    for index, values in state_dict["state"].items():
        for key, value in values.items():
            flat[f"{index}.{key}"] = torch.as_tensor(value)
    return flat


def unflatten_optimizer_state(flat: dict[str, Tensor]) -> dict[int, dict[str, Tensor]]:
    state: dict[int, dict[str, Tensor]] = {}
    for name, value in flat.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return state


def read_trainer_state(path: Path) -> dict[str, Any]:
    file = path / "trainer_state.json"
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{file} is unreadable ({err}); resume from another checkpoint.") from err


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first (temporary folders never count)."""
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        match = _CHECKPOINT_RE.match(p.name)
        if match and (p / "trainer_state.json").is_file():
            found.append((int(match.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint folder in ``root`` (``output_dir/checkpoints``), or None."""
    found = list_checkpoints(Path(root))
    return found[-1] if found else None


def checkpoint_damage(path: Path) -> str | None:
    """Why the checkpoint folder ``path`` cannot be resumed from (unreadable state, a missing
    file, a hash that does not match), or ``None`` when it is intact."""
    try:
        hashes = read_trainer_state(path).get("sha256", {})
        for name in ("model.safetensors", "optimizer.safetensors", "extra.safetensors"):
            file = path / name
            if not file.is_file():
                return f"{file} is missing"
            expected = hashes.get(name)
            if expected is not None and hashlib.sha256(file.read_bytes()).hexdigest() != expected:
                return f"{file} does not match the hash in its trainer_state.json"
    except (OSError, ValueError, AttributeError) as err:
        return str(err)
    return None


def check_intact(path: Path, what: str) -> None:
    """Refuse a damaged checkpoint, naming the newest intact one beside it."""
    reason = checkpoint_damage(path)
    if reason is None:
        return
    others = [p for p in reversed(list_checkpoints(path.parent)) if p != path]
    intact = next((p for p in others if checkpoint_damage(p) is None), None)
    if intact is None:
        hint = "no other intact checkpoint exists there: start afresh (drop resume_from)."
    else:
        hint = (
            f"{intact} is intact: resume from it with resume_from={str(intact)!r} (CLI: "
            f"--resume {intact}), or delete the damaged folder."
        )
    raise ValueError(f"{what} {path} is damaged ({reason}); {hint}")


def discard_checkpoint(path: Path) -> None:
    """Delete a checkpoint folder; first renamed to a temporary name, so that a kill during
    the deletion never leaves a half-deleted folder that still reads as a checkpoint."""
    hidden = path.with_name(f".tmp-{path.name}-discarded-{os.getpid()}")
    os.replace(path, hidden)
    shutil.rmtree(hidden, ignore_errors=True)


def clear_stale_checkpoints(root: Path | None) -> None:
    """Delete the temporary folders of checkpoints killed while written or discarded."""
    if root is not None and root.is_dir():
        for stale in root.glob(".tmp-step_*"):
            shutil.rmtree(stale, ignore_errors=True)
