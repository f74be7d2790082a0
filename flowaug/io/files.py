"""Files readers never see half-written: atomic writes, and safetensors files checked
against their SHA-256."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import Tensor

__all__ = ["atomic_write_bytes", "clear_stale_temporaries", "load_tensors", "save_tensors"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    Writes a temporary file in the same directory (same file system), flushes it to disk and
    moves it over ``path`` with ``os.replace``.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; saved models are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def clear_stale_temporaries(directory: str | os.PathLike, names: Sequence[str]) -> None:
    """Delete what killed :func:`atomic_write_bytes` calls left of the files ``names`` in
    ``directory`` (``.NAME.*.tmp``). Call it where no other process writes those files."""
    directory = Path(directory)
    for name in names:
        for stale in directory.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)


def _tensors_for_saving(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    # safetensors refuses views and shared storage: give it private, contiguous CPU copies
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def save_tensors(
    tensors: Mapping[str, Tensor],
    path: str | os.PathLike,
    metadata: Mapping[str, str] | None = None,
) -> str:
    """Atomically write a dict of tensors as safetensors; returns the file's SHA-256 (hex)."""
    # metadata=None when there is none: safetensors 0.8 writes an unreadable header for no
    # tensors with an empty metadata dict (a checkpoint's extras without EMA or best weights)
    data = save_safetensors_bytes(
        _tensors_for_saving(tensors), metadata=dict(metadata) if metadata else None
    )
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def load_tensors(
    path: str | os.PathLike, expected_sha256: str | None = None, what: str = "the file"
) -> dict[str, Tensor]:
    """Read a safetensors file into CPU tensors, checking its hash when one is given.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file is truncated, corrupted, or not the one ``expected_sha256`` names.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; {what} needs it. Save it again.")
    data = path.read_bytes()
    if expected_sha256 is not None and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise ValueError(
            f"{path} does not match the hash recorded next to it (truncated, corrupted, or "
            f"written by a different save than its config); {what} cannot be trusted. "
            "Save it again."
        )
    try:
        return load_safetensors_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise ValueError(
            f"{path} is not a readable safetensors file ({err}); it is truncated or corrupted. "
            "Save it again."
        ) from err
