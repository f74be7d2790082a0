"""The column encoder interface and what every kind shares: JSON-native values, names, codes.

A column encoder maps one DataFrame column to ``width`` model-space dimensions (before
standardization) and back to exactly the column's dtype. Its fields are its whole state, JSON
values only (:meth:`ColumnEncoder.to_config`), so it travels in a model's ``config.json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd

__all__ = ["ColumnEncoder", "column_names", "dtype_family"]


def dtype_family(dtype: Any) -> str:
    """``"bool"``, ``"integer"``, ``"float"`` or ``"text/category"`` (else the dtype's name):
    dtypes of one family hold the same kind of values (``float32`` and ``float64`` do)."""
    if isinstance(dtype, str):
        try:
            dtype = pd.api.types.pandas_dtype(dtype)
        except TypeError:
            return dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
        return "text/category"
    if pd.api.types.is_object_dtype(dtype):
        return "text/category"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    return str(dtype)


def native(value: Any, column: Any) -> Any:
    """A JSON-native scalar (str, int, float, bool) from a pandas/numpy value."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(
        f"column {column!r} holds a value of type {type(value).__name__} ({value!r}); only str, "
        "int, float and bool values can be stored in a model config. Convert the column first."
    )


def check_name(name: Any) -> Any:
    """A column name as stored in JSON: a plain str or int."""
    name = native(name, name)
    if name is None or isinstance(name, float):
        raise TypeError(f"column names must be str or int, got {name!r}.")
    return name


def column_names(names: Any, argument: str) -> list[Any]:
    """``names`` as a list of column names: ``None`` -> ``[]``, one name (str or int) -> a
    one-item list (a string is a name, never a sequence of one-letter names)."""
    if names is None:
        return []
    if isinstance(names, (str, int, np.integer)) and not isinstance(names, bool):
        return [names]
    if isinstance(names, (bool, float)) or not isinstance(names, Iterable):
        raise TypeError(
            f"{argument} must be a column name or a list of column names, got "
            f"{type(names).__name__} {names!r}."
        )
    return list(names)


def observed_values(s: pd.Series, name: Any) -> tuple[list[Any], list[Any] | None, bool]:
    """The values ``s`` holds (category order for a ``category`` dtype, else sorted, or in order
    of appearance when they do not sort), and the full categories and ordering of a ``category``
    dtype (``None, False`` otherwise)."""
    observed = set(pd.unique(s))
    dtype_categories, ordered = None, False
    if isinstance(s.dtype, pd.CategoricalDtype):
        dtype_categories = [native(c, name) for c in s.dtype.categories]
        ordered = bool(s.dtype.ordered)
        values = [c for c in s.dtype.categories if c in observed]
    else:
        try:
            values = sorted(observed)
        except TypeError:  # mixed types
            values = list(observed)
    return [native(c, name) for c in values], dtype_categories, ordered


def lookup_codes(
    s: pd.Series, name: Any, index: dict[Any, int], unseen_error: Callable[[str], str]
) -> np.ndarray:
    """Values -> int64 codes ``[N]`` through ``index``; unseen values raise
    ``ValueError(unseen_error(first five unseen, comma-separated))``."""
    values = [native(v, name) for v in s.tolist()]
    unseen = sorted({repr(v) for v in values if v not in index})
    if unseen:
        raise ValueError(unseen_error(", ".join(unseen[:5])))
    return np.fromiter((index[v] for v in values), dtype=np.int64, count=len(values))


def category_series(
    values: Sequence[Any], name: Any, dtype: str, categories: Sequence[Any] | None, ordered: bool
) -> pd.Series:
    """Decoded values as a Series of the original dtype (rebuilding a ``category`` dtype)."""
    column = np.empty(len(values), dtype=object)
    column[:] = list(values)
    if dtype == "category":
        dtype = pd.CategoricalDtype(categories, ordered=ordered)
    return pd.Series(column, name=name).astype(dtype)


@dataclasses.dataclass(eq=False, repr=False)
class ColumnEncoder:
    """One column <-> ``width`` model-space dimensions (before standardization).

    Subclasses implement ``cells(s) -> float64 [N, width]`` (the values, or the lower corners of
    discrete cells) and ``decode(v [N, width], any real values) -> Series`` of the column's dtype.

    Attributes:
        name: column name.
        dtype: the column's pandas dtype as a string (``"int64"``, ``"category"``, ...).
        fill: value used for missing entries, or ``None`` (missing values are then an error).
        width: number of model-space dimensions.
        discrete: whether the dimensions are dequantized cells (noise added when encoding).
    """

    kind: ClassVar[str] = "base"
    width: ClassVar[int] = 0
    discrete: ClassVar[bool] = False
    name: Any
    dtype: str
    fill: Any = dataclasses.field(default=None, kw_only=True)

    def prepare(self, s: pd.Series) -> pd.Series:
        """Fill or reject missing values; reject infinite ones."""
        missing = int(s.isna().sum())
        if missing:
            if self.fill is None:
                raise ValueError(
                    f"column {self.name!r} has {missing} missing value(s); drop or fill them "
                    "first, or pass impute='mean' (numeric mean, categorical mode) or "
                    "impute='mode'."
                )
            s = s.fillna(self.fill)
        if pd.api.types.is_float_dtype(s.dtype):
            infinite = int(np.isinf(s.to_numpy(dtype=np.float64)).sum())
            if infinite:
                raise ValueError(
                    f"column {self.name!r} has {infinite} infinite value(s); replace them (e.g. "
                    "df.replace([np.inf, -np.inf], np.nan) and impute=...) or drop those rows."
                )
        return s

    def to_config(self) -> dict[str, Any]:
        fields = dataclasses.fields(self)
        return {"kind": self.kind, **{f.name: getattr(self, f.name) for f in fields}}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, dtype={self.dtype}, width={self.width})"
