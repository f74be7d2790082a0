"""Load-time checks of a saved model's ``config.json``: every field, and the memory it implies.

``flowaug.load`` runs these before it builds anything, so an edited or corrupted config is
refused with the field, the value and what is allowed, instead of ending in an allocator error
(``hidden=10**9``), a model that takes hours to build (``depth=10**7``) or one that computes
NaN (``clamp=-1``). The bounds are far above any model flowaug would fit; they exist to catch
files that cannot be right.

Example:
    >>> check_model_config("Glow", {"clamp": -1.0}, "m/config.json")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: m/config.json: Glow rejects clamp=-1.0; expected a finite number in (0, 100]. ...
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["FIELDS", "check_model_config", "estimate_state_bytes"]

#: a check returns a description of what is allowed when ``value`` is not, else ``None``
Check = Callable[[Any], str | None]


def _integer(low: int, high: int, optional: bool = False) -> Check:
    def check(value: Any) -> str | None:
        if optional and value is None:
            return None
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        if ok and low <= value <= high:
            return None
        return f"an integer in [{low}, {high}]" + (" or null" if optional else "")

    return check


def _number(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Check:
    def check(value: Any) -> str | None:
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, bool
        )
        if ok and math.isfinite(value):
            above = value > low if low_open else value >= low
            below = value < high if high_open else value <= high
            if above and below:
                return None
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        return f"a finite number in {left}{low:g}, {high:g}{right}"

    return check


def _choice(*options: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in options else f"one of {list(options)}"

    return check


def _image_shape(value: Any) -> str | None:
    allowed = "[C, H, W]: three integers in [1, 4096]"
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        return allowed
    return None if all(_integer(1, 4096)(v) is None for v in value) else allowed


def _mapping_or_null(value: Any) -> str | None:
    return None if value is None or isinstance(value, Mapping) else "a JSON object or null"


_COMMON: dict[str, Check] = {
    "num_classes": _integer(0, 1_000_000),
    "depth": _integer(1, 1024),
    "hidden": _integer(1, 65_536),
    "cond_dim": _integer(1, 65_536),
    "dropout": _number(0, 1, high_open=True),
    "clamp": _number(0, 100, low_open=True),
    "bins": _integer(1, 1024),
}

#: model type -> field -> check; a model type not listed here is not checked field by field
FIELDS: dict[str, dict[str, Check]] = {
    "Glow": {
        **_COMMON,
        "image_shape": _image_shape,
        "num_scales": _integer(1, 12, optional=True),
        "num_levels": _integer(1, 12, optional=True),  # the old name of num_scales
        "logit_alpha": _number(0, 0.5, low_open=True, high_open=True),
        "levels": _integer(2, 65_536),
        "coupling": _choice("affine", "spline"),
    },
    "TabularFlow": {
        **_COMMON,
        "num_features": _integer(1, 1_000_000),
        "coupling": _choice("spline", "affine"),
        "bound": _number(0, 1000, low_open=True),
        "noise_std": _number(0, 100),
        "columns": _mapping_or_null,
    },
}


def check_model_config(model_type: str, config: Mapping[str, Any], where: str) -> None:
    """Refuse a config field whose value the model type cannot have.

    Fields the type does not know are left to the model's constructor (which refuses them).

    Raises:
        ValueError: naming ``where``, the field, its value and what is allowed.
    """
    fields = FIELDS.get(model_type)
    if fields is None:
        return
    for name, check in fields.items():
        if name not in config:
            continue
        allowed = check(config[name])
        if allowed is not None:
            value = repr(config[name])
            value = value if len(value) <= 60 else value[:57] + "..."
            raise ValueError(
                f"{where}: {model_type} rejects {name}={value}; expected {allowed}. The file "
                "was edited or damaged: restore it or save the model again."
            )


def _state_bytes(module: nn.Module) -> int:
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def estimate_state_bytes(
    build: Callable[[dict[str, Any]], nn.Module], config: dict[str, Any]
) -> int:
    """Bytes of the parameters and buffers the model of ``config`` would hold.

    Builds the model on the ``meta`` device (no memory for the tensors); a deep model is built
    at depth 1 and 2 and extrapolated (its size is linear in ``depth``), so that a huge depth
    costs no time either.
    """
    depth = config.get("depth")
    with torch.device("meta"):
        if isinstance(depth, int) and depth > 2:
            one = _state_bytes(build({**config, "depth": 1}))
            two = _state_bytes(build({**config, "depth": 2}))
            return one + (two - one) * (depth - 1)
        return _state_bytes(build(dict(config)))
