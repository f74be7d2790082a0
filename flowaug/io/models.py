"""Saved models: ``save_model`` / ``load`` of a folder with ``config.json`` and
``model.safetensors`` (the format is described in :mod:`flowaug.io`); loading never unpickles."""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flowaug.io.config_checks import FIELDS, check_model_config, estimate_state_bytes
from flowaug.io.files import atomic_write_bytes, clear_stale_temporaries, load_tensors, save_tensors
from flowaug.sizes import check_fits_in_memory

__all__ = [
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "MODEL_TYPES",
    "WEIGHTS_NAME",
    "load",
    "register_model_type",
    "save_model",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1

#: model type name -> ``"module:attribute"`` (imported on first use, so a model family whose
#: module is optional or written later costs nothing until a file asks for it) or the class.
MODEL_TYPES: dict[str, str | type[nn.Module]] = {
    "Glow": "flowaug.flows.glow:Glow",
    "TabularFlow": "flowaug.tabular:TabularFlow",
}


def register_model_type(name: str, target: str | type[nn.Module]) -> None:
    """Make ``load`` understand ``model_type == name``.

    Args:
        name: the class name written to ``config.json``.
        target: the class, or ``"package.module:ClassName"`` to import lazily.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}.")
    MODEL_TYPES[name] = target


def _resolve_model_type(name: str, config_path: Path) -> type[nn.Module]:
    target = MODEL_TYPES.get(name)
    if target is None:
        raise ValueError(
            f"{config_path} declares model_type {name!r}, which flowaug does not know; known "
            f"types: {sorted(MODEL_TYPES)}. Register it with "
            "flowaug.io.register_model_type(name, 'module:Class') before loading."
        )
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ValueError(
                f"{config_path} holds a {name}, but its module {module_name!r} cannot be "
                f"imported ({err}); install a flowaug version that provides it."
            ) from err
        target = getattr(module, attr)
    return target


def _check_class_names(class_names: Any, num_classes: int | None) -> list[str] | None:
    if class_names is None:
        return None
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise TypeError(
            f"class_names must be a sequence of strings, got {type(class_names).__name__}."
        )
    names = [str(c) for c in class_names]
    if num_classes is not None and num_classes > 0 and len(names) != num_classes:
        raise ValueError(
            f"class_names has {len(names)} entries for a model with {num_classes} classes; "
            "pass one name per class, in label order."
        )
    return names


def save_model(
    model: nn.Module, directory: str | os.PathLike, class_names: Sequence[str] | None = None
) -> None:
    """Write ``model`` to ``directory`` as ``model.safetensors`` + ``config.json``.

    Args:
        model: a flowaug model (a :class:`~flowaug.flows.base.ConditionalFlow` with a JSON
            ``config`` dict of constructor arguments).
        directory: created if needed; existing files of a previous save are replaced.
        class_names: one name per class (default: the model's ``class_names`` attribute).
    """
    config = getattr(model, "config", None)
    if not isinstance(model, nn.Module) or not isinstance(config, dict):
        raise TypeError(
            f"model must be a flowaug model (an nn.Module with a `config` dict), got "
            f"{type(model).__name__}."
        )
    model_type = type(model).__name__
    if model_type not in MODEL_TYPES:
        register_model_type(model_type, f"{type(model).__module__}:{type(model).__qualname__}")
    if class_names is None:
        class_names = getattr(model, "class_names", None)
    names = _check_class_names(class_names, getattr(model, "num_classes", None))
    try:
        config_json = json.dumps(config)
    except TypeError as err:
        raise TypeError(
            f"{model_type}.config must be JSON-serializable to save the model ({err})."
        ) from err

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    digest = save_tensors(model.state_dict(), directory / WEIGHTS_NAME, metadata={"format": "pt"})
    record = {
        "format_version": FORMAT_VERSION,
        "model_type": model_type,
        "config": json.loads(config_json),
        "class_names": names,
        "weights_sha256": digest,
    }
    atomic_write_bytes(directory / CONFIG_NAME, (json.dumps(record, indent=2) + "\n").encode())
    clear_stale_temporaries(directory, [WEIGHTS_NAME, CONFIG_NAME])


def _read_config(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise FileNotFoundError(
            f"{directory} is not a directory; pass the folder written by save_pretrained."
        )
    if not path.is_file():
        if (directory / "trainer_state.json").is_file():
            raise FileNotFoundError(
                f"{directory} is a training checkpoint, not a saved model; load the model the "
                f"run wrote to {directory.parent.parent} (its output_dir), or resume from the "
                "checkpoint with FlowTrainer.fit(..., resume_from=...)."
            )
        raise FileNotFoundError(
            f"{path} is missing: {directory} was not written by save_pretrained / "
            "flowaug.io.save_model, or the save did not finish. Save the model again."
        )
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{path} is not valid JSON ({err}); it is truncated or corrupted. Save the model again."
        ) from err
    except RecursionError as err:  # nesting deeper than the parser's stack
        raise ValueError(
            f"{path} nests its JSON too deeply to be a flowaug model config; it is corrupted. "
            "Save the model again."
        ) from err
    if not isinstance(record, dict) or not {"format_version", "model_type", "config"} <= set(
        record
    ):
        raise ValueError(
            f"{path} lacks format_version / model_type / config: not a flowaug model config."
        )
    if record["format_version"] != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {record['format_version']!r}; this flowaug reads "
            f"version {FORMAT_VERSION}. Upgrade flowaug or re-save the model with this version."
        )
    if not isinstance(record["config"], dict):
        raise ValueError(f"{path}: 'config' must be a JSON object, got {record['config']!r}.")
    if not isinstance(record["model_type"], str):
        raise ValueError(f"{path}: 'model_type' must be a string, got {record['model_type']!r}.")
    digest = record.get("weights_sha256")
    if not _is_sha256(digest):
        found = "lacks weights_sha256" if digest is None else f"has weights_sha256={digest!r}"
        raise ValueError(
            f"{path} {found}; format version {FORMAT_VERSION} records the SHA-256 of "
            f"{WEIGHTS_NAME} (64 hex digits) so that damaged or swapped weights are never "
            "loaded. Save the model again, or, if you trust the weights, write the output of "
            f'`sha256sum {directory / WEIGHTS_NAME}` into config.json as "weights_sha256".'
        )
    return record


def _is_sha256(value: Any) -> bool:
    return (
        isinstance(value, str)
        and len(value) == 64
        and all(c in "0123456789abcdef" for c in value.lower())
    )


def _factory(cls: type[nn.Module]) -> Callable[[dict[str, Any]], nn.Module]:
    # a model family with non-tensor state (e.g. column encoders) may provide from_config
    return getattr(cls, "from_config", None) or (lambda cfg: cls(**cfg))


def _build(cls: type[nn.Module], config: dict[str, Any], config_path: Path) -> nn.Module:
    try:
        return _factory(cls)(dict(config))
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as err:
        # KeyError and friends: a nested part (e.g. the column encoders) lacks an entry
        raise ValueError(
            f"{config_path} holds a config that {cls.__name__} rejects "
            f"({type(err).__name__}: {err}); the file was edited or written by an incompatible "
            "flowaug version."
        ) from err
    except MemoryError as err:
        raise ValueError(
            f"building the {cls.__name__} described by {config_path} ran out of memory; free "
            "memory, or check the config's depth / hidden / image_shape."
        ) from err


def _check_config(cls: type[nn.Module], record: dict[str, Any], config_path: Path) -> None:
    """Every field in range, and weights that fit in memory, before anything is allocated."""
    model_type = record["model_type"]
    config = record["config"]
    check_model_config(model_type, config, str(config_path))
    if model_type not in FIELDS:  # a registered type: building it on meta may not be safe
        return
    try:
        estimate = estimate_state_bytes(_factory(cls), config)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError):
        return  # _build reports what is wrong with the config, with its own message
    check_fits_in_memory(
        estimate,
        f"the {model_type} described by {config_path}",
        "the config was edited or damaged (see its depth / hidden / image_shape). Restore it "
        "or save the model again.",
    )


def _check_finite_weights(state: Mapping[str, Tensor], path: Path) -> None:
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(
                f"{path}: tensor {name!r} holds {bad} NaN or infinite value(s) of "
                f"{tensor.numel()}; such a model samples NaN or blank data. The training "
                "diverged or the file was damaged: load an earlier checkpoint, or retrain with "
                "a lower learning rate."
            )


def load(directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load a model written by ``save_pretrained`` / :func:`save_model`, in eval mode.

    Args:
        directory: the folder holding ``config.json`` and ``model.safetensors``.
        map_location: device for the weights.

    Returns:
        the model, with ``class_names`` (list of str or ``None``) set as an attribute.

    Raises:
        FileNotFoundError: the directory or one of its files is missing.
        ValueError: a file is truncated or corrupted, the files come from different saves, a
            config field is out of range (or the weights it describes cannot fit in memory),
            the weights hold NaN or inf, or they do not fit the model the config describes.
    """
    directory = Path(directory)
    record = _read_config(directory)
    config_path = directory / CONFIG_NAME
    cls = _resolve_model_type(record["model_type"], config_path)
    _check_config(cls, record, config_path)
    state = load_tensors(
        directory / WEIGHTS_NAME,
        expected_sha256=record["weights_sha256"].lower(),
        what=f"the model described by {config_path}",
    )
    _check_finite_weights(state, directory / WEIGHTS_NAME)
    model = _build(cls, record["config"], config_path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or wrong:
        details = "; ".join(
            f"{label}: {keys[:5]}{' ...' if len(keys) > 5 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", wrong))
            if keys
        )
        raise ValueError(
            f"{directory / WEIGHTS_NAME} does not fit the {record['model_type']} described by "
            f"{config_path} ({details}); the two files come from different models. Save the "
            "model again."
        )
    model.load_state_dict(state, strict=True)
    model.class_names = _check_class_names(
        record.get("class_names"), getattr(model, "num_classes", None)
    )
    return model.to(map_location).eval()
