"""The state of a training run (:class:`History`, what it records; :class:`RunState`, what it
resumes from) and its checkpoints: :func:`save_state` and :func:`load_state`.

A checkpoint is a folder ``output_dir/checkpoints/step_NNNNNNNN`` holding :data:`MODEL_FILE`,
:data:`OPTIMIZER_FILE`, :data:`EXTRA_FILE` (EMA and best weights, the semi-supervised state)
and :data:`STATE_FILE`, written last, which records the run's counters, its settings and the
SHA-256 of the three safetensors files. A folder without it, or any hidden ``.tmp-step_*``
folder, is never taken for a checkpoint. A folder is discarded by renaming it to such a hidden
name first, so a kill during the deletion leaves a temporary folder (cleared by the next save)
instead of a damaged checkpoint that still lists as complete.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flowaug.io import atomic_write_bytes, load_tensors, save_tensors
from flowaug.training.config import TrainConfig

__all__ = [
    "MODEL_FILE", "OPTIMIZER_FILE", "EXTRA_FILE", "STATE_FILE", "History", "RunState", "save_state",
    "load_state", "find_checkpoint", "check_intact", "checkpoint_damage",
    "clear_stale_checkpoints", "discard_checkpoint", "latest_checkpoint", "list_checkpoints",
    "read_trainer_state",
]  # fmt: skip

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
EXTRA_FILE = "extra.safetensors"
STATE_FILE = "trainer_state.json"
_TENSOR_FILES = (MODEL_FILE, OPTIMIZER_FILE, EXTRA_FILE)
_CHECKPOINT_RE = re.compile(r"^step_(\d+)$")

# TrainConfig fields a resumed run may change: they do not shape the weights' trajectory
RESUMABLE_CHANGES = frozenset(
    {"progress", "output_dir", "checkpoint_every", "keep_checkpoints", "max_time", "cpu"}
)


@dataclass
class History:
    """What a training run recorded.

    Attributes:
        records: one dict per evaluation: ``step``, ``epoch``, ``train_bpd`` (mean over the
            steps since the previous record), ``val_bpd`` (``None`` without validation data),
            ``lr``, ``time`` (seconds since the start), ``bad_steps`` (skipped so far).
        best_step: step of the best validation bits/dim (whose weights the model ends with).
        best_val_bpd: that validation bits/dim.
        stopped_early: whether early stopping ended the run.
        interrupted: the signal number that ended the run (SIGINT 2, SIGTERM 15), or None.
        bad_steps: steps skipped for a non-finite loss or gradient.
        steps: optimizer steps run.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    best_step: int | None = None
    best_val_bpd: float | None = None
    stopped_early: bool = False
    bad_steps: int = 0
    steps: int = 0
    interrupted: int | None = None

    def column(self, key: str) -> list[Any]:
        """One field of every record, e.g. ``history.column("val_bpd")``."""
        return [r.get(key) for r in self.records]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_bytes(path, (json.dumps(self.to_dict(), indent=2) + "\n").encode())

    @classmethod
    def load(cls, path: str | os.PathLike) -> History:
        return cls(**json.loads(Path(path).read_text()))


@dataclass
class RunState:
    """Everything a resumed run needs besides weights and optimizer moments."""

    step: int = 0
    bad_steps: int = 0
    consecutive_bad: int = 0
    train_sum: float = 0.0
    train_count: int = 0
    best_val: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    stopped_early: bool = False
    elapsed: float = 0.0
    records: list[dict[str, Any]] = field(default_factory=list)
    ema: dict[str, Tensor] | None = None
    best: dict[str, Tensor] | None = None

    def to_json(self) -> dict[str, Any]:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)[:-2]}

    @classmethod
    def from_json(cls, meta: dict[str, Any]) -> RunState:
        return cls(**{f.name: meta[f.name] for f in fields(cls)[:-2] if f.name in meta})

    def history(self, interrupted: int | None = None) -> History:
        return History(list(self.records), self.best_step, self.best_val, self.stopped_early,
                       self.bad_steps, self.step, interrupted)  # fmt: skip


def save_state(
    root: Path, state: RunState, model: nn.Module, optimizer: Any, meta: dict[str, Any],
    ssl: dict[str, Tensor] | None, keep: int,
) -> None:  # fmt: skip
    """Write the checkpoint of ``state.step`` under ``root``, keeping the ``keep`` newest.

    ``meta`` (this run's ``config``, ``model_config`` and ``num_train``) joins ``state``'s
    counters in :data:`STATE_FILE`; ``ssl`` is the semi-supervised state. Written in a
    temporary folder renamed into place, so a kill leaves the old checkpoints or the new one.
    """
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{state.step:08d}"
    clear_stale_checkpoints(root)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    tmp.mkdir()
    moments = {
        f"{index}.{key}": torch.as_tensor(value)
        for index, values in optimizer.state_dict()["state"].items()
        for key, value in values.items()
    }
    extra = {}
    for prefix, tensors in (("ema.", state.ema), ("best.", state.best), ("ssl.", ssl)):
        extra.update({prefix + k: v for k, v in (tensors or {}).items()})
    parts = zip(_TENSOR_FILES, (model.state_dict(), moments, extra), strict=True)
    hashes = {name: save_tensors(tensors, tmp / name) for name, tensors in parts}
    content = {**state.to_json(), **meta, "sha256": hashes}
    # the state file last: a folder without it is never taken for a checkpoint
    atomic_write_bytes(tmp / STATE_FILE, json.dumps(content, indent=1).encode())
    if final.exists():
        discard_checkpoint(final)
    os.replace(tmp, final)
    for old in list_checkpoints(root)[:-keep]:
        discard_checkpoint(old)


def load_state(
    path: Path, model: nn.Module, optimizer: Any, meta: dict[str, Any]
) -> tuple[RunState, dict[str, Tensor]]:
    """Load the checkpoint ``path`` into ``model`` and ``optimizer`` (hashes checked), after
    refusing one of a run with other settings, another model or other data (``meta``: this
    run's, as :func:`save_state` takes it).

    Returns:
        ``(state, ssl)``: the run's counters with its EMA and best weights, and the
        semi-supervised state.
    """
    saved = read_trainer_state(path)
    _check_resumable(path, saved, meta)
    hashes, what = saved.get("sha256", {}), f"checkpoint {path}"
    weights, flat, extra = (
        load_tensors(path / name, hashes.get(name), what) for name in _TENSOR_FILES
    )
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{what} does not fit this model ({err}).") from err
    moments: dict[int, dict[str, Tensor]] = {}
    for name, value in flat.items():
        index, key = name.split(".", 1)
        moments.setdefault(int(index), {})[key] = value
    groups = optimizer.state_dict()["param_groups"]
    optimizer.load_state_dict({"state": moments, "param_groups": groups})
    state = RunState.from_json(saved)
    part = {p: {k[len(p) :]: v for k, v in extra.items() if k.startswith(p)}
            for p in ("ema.", "best.", "ssl.")}  # fmt: skip
    state.ema, state.best = part["ema."] or None, part["best."] or None
    return state, part["ssl."]


def _check_resumable(path: Path, saved: dict[str, Any], now: dict[str, Any]) -> None:
    # a config key the checkpoint lacks (an older version's) counts as its default
    defaults = TrainConfig(output_dir=now["config"]["output_dir"]).to_dict()
    changed = _changes(saved.get("config", {}), now["config"], RESUMABLE_CHANGES, defaults)
    if changed:
        raise ValueError(
            f"checkpoint {path} was written with other settings than this run has: "
            f"{', '.join(changed)}; resume with the same settings (only "
            f"{', '.join(sorted(RESUMABLE_CHANGES))} may change) or start a fresh "
            "output_dir."
        )
    diff = _changes(saved.get("model_config"), now["model_config"])
    if "model_config" in saved and diff:
        raise ValueError(
            f"checkpoint {path} is of a model built differently ({', '.join(diff)}); "
            "resume into a model built with the same arguments."
        )
    if saved.get("num_train") != now["num_train"]:
        raise ValueError(
            f"checkpoint {path} was trained on {saved.get('num_train')} samples, this run "
            f"has {now['num_train']}; resume with the same training data."
        )


def _changes(
    saved: Any, now: Any, ignore: frozenset[str] = frozenset(), defaults: dict | None = None
) -> list[str]:
    """``"key=saved -> now"`` for every key whose value differs between a JSON-read dict
    (``saved``, missing keys taken from ``defaults``) and a live one (``now``, compared as it
    would read back), ``ignore`` aside."""
    saved, now = dict(saved or {}), json.loads(json.dumps(now or {}))
    for key, value in json.loads(json.dumps(defaults or {})).items():
        saved.setdefault(key, value)
    keys = sorted((set(saved) | set(now)) - ignore)
    return [f"{k}={saved.get(k)!r} -> {now.get(k)!r}" for k in keys if saved.get(k) != now.get(k)]


def find_checkpoint(
    resume_from: str | os.PathLike | None, root: Path | None, writes_checkpoints: bool
) -> Path | None:
    """The intact checkpoint ``resume_from`` names (a folder, or ``"latest"`` in ``root``);
    ``None`` for a fresh run, refused when ``root`` holds an earlier run's checkpoints that it
    would mix with."""
    if resume_from is None:
        earlier = list_checkpoints(root) if writes_checkpoints and root is not None else []
        if earlier:
            raise ValueError(
                f"{root} holds checkpoints of an earlier run (up to {earlier[-1].name}); "
                "pass resume_from='latest' to continue it, or use another output_dir (or "
                "delete that folder) to start afresh."
            )
        return None
    if str(resume_from) != "latest":
        path = Path(resume_from)
        if not (path / STATE_FILE).is_file():
            raise FileNotFoundError(
                f"resume_from={str(resume_from)!r} is not a complete checkpoint (no "
                f"{STATE_FILE}); pass a folder under output_dir/checkpoints or 'latest'."
            )
        check_intact(path, "resume_from: the checkpoint")
        return path
    if root is None:
        raise ValueError("resume_from='latest' needs config.output_dir to look in.")
    found = latest_checkpoint(root)
    if found is not None:
        check_intact(found, "resume_from='latest': the newest checkpoint")
    return found


def read_trainer_state(path: Path) -> dict[str, Any]:
    file = path / STATE_FILE
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
        if match and (p / STATE_FILE).is_file():
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
        for name in _TENSOR_FILES:
            file = path / name
            if not file.is_file():
                return f"{file} is missing"
            expected = hashes.get(name)
            if expected is not None and hashlib.sha256(file.read_bytes()).hexdigest() != expected:
                return f"{file} does not match the hash in its {STATE_FILE}"
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
