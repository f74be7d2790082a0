"""The validators public entry points share: each names the argument, what it received and what
it expects, so every entry point says the same thing about the same mistake."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = [
    "check_int",
    "check_number",
    "check_probability",
    "check_temperature",
    "check_threshold",
    "is_number",
]


def is_number(value: Any) -> bool:
    """A real number (Python or numpy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_temperature(temperature: Any) -> float:
    """A finite number >= 0 (Python or numpy, not a bool), as a float."""
    if not is_number(temperature):
        raise TypeError(f"temperature must be a number >= 0, got {temperature!r}.")
    if not 0 <= temperature or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}.")
    return float(temperature)


def check_int(name: str, value: Any, minimum: int) -> None:
    """An integer (Python or numpy, not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def check_number(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> None:
    """A finite number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bound = f"{'>' if low_open else '>='} {low}" if low is not None else "finite"
        bound += f" and <= {high}" if high is not None else ""
        raise ValueError(f"{name} must be a number {bound}, got {value!r}.")


def check_probability(p: Any, name: str = "p") -> float:
    """A number in ``[0, 1]``, as a float."""
    if not is_number(p):
        raise TypeError(f"{name} must be a number in [0, 1], got {type(p).__name__} {p!r}.")
    if not 0 <= p <= 1:
        raise ValueError(f"{name} must be a probability in [0, 1], got {float(p)!r}.")
    return float(p)


def check_threshold(filter_threshold: Any) -> float | None:
    """``None`` or a class-posterior threshold in ``[0, 1)``."""
    if filter_threshold is None:
        return None
    if not is_number(filter_threshold):
        raise TypeError(
            f"filter_threshold must be a number in [0, 1) or None, got {filter_threshold!r}."
        )
    if not 0 <= filter_threshold < 1:
        raise ValueError(
            f"filter_threshold must be in [0, 1) (a class-posterior probability), got "
            f"{filter_threshold!r}; 0.5-0.9 are typical."
        )
    return float(filter_threshold)
