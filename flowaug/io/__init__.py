"""Persistence: weights in safetensors, configuration in JSON; loading never unpickles.

A saved model is a directory with two files::

    config.json        {"format_version": 1, "model_type": "Glow", "config": {...},
                        "class_names": [...], "weights_sha256": "..."}
    model.safetensors  the state dict (parameters and buffers)

Both files are written atomically (temporary file in the same directory, then ``os.replace``),
and ``config.json`` records the SHA-256 of the weights it goes with, so a crash between the two
writes, a truncated copy or files from two different saves are detected at load time instead of
giving a silently wrong model. Output folders are replaced whole (:mod:`flowaug.io.folders`).

Example:
    >>> import tempfile, torch
    >>> from flowaug import Glow
    >>> model = Glow((1, 8, 8), num_classes=2, depth=1, hidden=8)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save_model(model, d, class_names=["cat", "dog"])
    ...     loaded = load(d)
    >>> loaded.class_names
    ['cat', 'dog']
"""

from flowaug.io.files import atomic_write_bytes, clear_stale_temporaries, load_tensors, save_tensors
from flowaug.io.folders import recover_folder, replace_folder, staging_folder
from flowaug.io.models import (
    CONFIG_NAME,
    FORMAT_VERSION,
    MODEL_TYPES,
    WEIGHTS_NAME,
    load,
    register_model_type,
    save_model,
)

__all__ = [
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "MODEL_TYPES",
    "WEIGHTS_NAME",
    "atomic_write_bytes",
    "clear_stale_temporaries",
    "load",
    "load_tensors",
    "recover_folder",
    "register_model_type",
    "replace_folder",
    "save_model",
    "save_tensors",
    "staging_folder",
]
