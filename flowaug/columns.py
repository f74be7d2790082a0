"""Column encoders: a DataFrame <-> float vectors in model space, and back to the same dtypes.

Each column becomes ``width`` model-space dimensions:

- continuous (float) columns: the value, optionally quantile-Gaussianized;
- integer columns: uniform dequantization ``k + u``, decoded by ``floor``;
- categorical columns (``object``, ``str``, ``category``, ``bool`` or listed in ``categorical``):
  two categories share one dimension (``code + u``), more get a one-hot block with uniform noise
  on every entry (``onehot + u``: the category's entry lies in ``[1, 2)``, the others in
  ``[0, 1)``), decoded by ``argmax``; only observed categories can come out;
- constant columns (a single observed value): no dimension at all.

Every dimension is then standardized. Dequantized cells are disjoint boxes of volume 1, so the
flow's density bounds the probability of the discrete values from below (Theis et al., 2016).
Decoding clips numbers into the observed ``[min, max]`` and returns exactly the original dtypes.
The whole encoder state is JSON-serializable (:meth:`TableEncoder.to_config`), so it travels in
a model's ``config.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.special import ndtr, ndtri
from torch import Tensor

__all__ = [
    "ColumnEncoder",
    "ContinuousColumn",
    "IntegerColumn",
    "CategoricalColumn",
    "ConstantColumn",
    "LabelEncoder",
    "TableEncoder",
    "unlabelled_rows",
]

# dequantization noise is drawn from [_EDGE, 1 - _EDGE) so that float32 round trips never cross a
# cell border; the cell is still a valid dequantization region (a slightly narrower uniform)
_EDGE = 1e-3
_IMPUTE = (None, "mean", "mode")
_CONTINUOUS = ("standard", "quantile")


def _native(value: Any, column: Any) -> Any:
    """A JSON-native scalar (str, int, float, bool) from a pandas/numpy value."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(
        f"column {column!r} holds a value of type {type(value).__name__} ({value!r}); only str, "
        "int, float and bool values can be stored in a model config. Convert the column first."
    )


def _check_name(name: Any) -> Any:
    name = _native(name, name)
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


def _mode(s: pd.Series) -> Any:
    return s.dropna().mode(dropna=True).iloc[0]


def _sorted_values(values: Iterable[Any]) -> list[Any]:
    values = list(values)
    try:
        return sorted(values)
    except TypeError:  # mixed types: keep order of appearance
        return values


def _observed_categories(s: pd.Series, name: Any) -> tuple[list[Any], list[Any] | None, bool]:
    """The values ``s`` holds (category order for a ``category`` dtype, else sorted), and the
    full categories and ordering of a ``category`` dtype (``None, False`` otherwise)."""
    observed = set(pd.unique(s))
    dtype_categories, ordered = None, False
    if isinstance(s.dtype, pd.CategoricalDtype):
        dtype_categories = [_native(c, name) for c in s.dtype.categories]
        ordered = bool(s.dtype.ordered)
        values = [c for c in s.dtype.categories if c in observed]
    else:
        values = _sorted_values(observed)
    return [_native(c, name) for c in values], dtype_categories, ordered


def _lookup_codes(
    s: pd.Series, name: Any, index: dict[Any, int], unseen_error: Callable[[str], str]
) -> np.ndarray:
    """Values -> int64 codes ``[N]`` through ``index``; unseen values raise
    ``ValueError(unseen_error(first five unseen, comma-separated))``."""
    values = [_native(v, name) for v in s.tolist()]
    unseen = sorted({repr(v) for v in values if v not in index})
    if unseen:
        raise ValueError(unseen_error(", ".join(unseen[:5])))
    return np.fromiter((index[v] for v in values), dtype=np.int64, count=len(values))


def _category_series(
    values: Sequence[Any],
    name: Any,
    dtype: str,
    dtype_categories: Sequence[Any] | None,
    ordered: bool,
) -> pd.Series:
    """Decoded values as a Series of the original dtype (rebuilding a ``category`` dtype)."""
    column = np.empty(len(values), dtype=object)
    column[:] = list(values)
    if dtype == "category":
        return pd.Series(column, name=name).astype(
            pd.CategoricalDtype(dtype_categories, ordered=ordered)
        )
    return pd.Series(column, name=name).astype(dtype)


class ColumnEncoder:
    """One column <-> ``width`` model-space dimensions (before standardization).

    Attributes:
        name: column name.
        dtype: the column's pandas dtype as a string (``"int64"``, ``"category"``, ...).
        width: number of model-space dimensions.
        discrete: whether the dimensions are dequantized cells (noise added when encoding).
        fill: value used for missing entries, or ``None`` (missing values are then an error).
    """

    kind = "base"
    width = 0
    discrete = False

    def __init__(self, name: Any, dtype: str, fill: Any = None):
        self.name = name
        self.dtype = dtype
        self.fill = fill

    def prepare(self, s: pd.Series) -> pd.Series:
        """Fill or reject missing values."""
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

    def cells(self, s: pd.Series) -> np.ndarray:
        """Column -> float64 ``[N, width]``: values, or the lower corners of discrete cells."""
        raise NotImplementedError

    def decode(self, v: np.ndarray) -> pd.Series:
        """Float ``[N, width]`` (any real values) -> Series of the original dtype."""
        raise NotImplementedError

    def to_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "dtype": self.dtype, "fill": self.fill}

    def _series(self, values: Any) -> pd.Series:
        return pd.Series(values, name=self.name).astype(self.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, dtype={self.dtype}, width={self.width})"


class ContinuousColumn(ColumnEncoder):
    """A float column: the value itself, or its quantile-Gaussianized value.

    Arguments:
        name, dtype, fill: see :class:`ColumnEncoder`.
        minimum, maximum: observed range; decoding clips into it when ``clip``.
        quantiles: sorted distinct reference values for the quantile transform, or ``None``.
        levels: their CDF levels in ``(0, 1)`` (same length).
        clip: clip decoded values into ``[minimum, maximum]``.
    """

    kind = "continuous"
    width = 1

    def __init__(
        self,
        name: Any,
        dtype: str,
        minimum: float,
        maximum: float,
        quantiles: Sequence[float] | None = None,
        levels: Sequence[float] | None = None,
        clip: bool = True,
        fill: Any = None,
    ):
        super().__init__(name, dtype, fill)
        self.minimum, self.maximum, self.clip = float(minimum), float(maximum), bool(clip)
        self.quantiles = None if quantiles is None else np.asarray(quantiles, dtype=np.float64)
        self.levels = None if levels is None else np.asarray(levels, dtype=np.float64)

    @classmethod
    def fit(
        cls,
        s: pd.Series,
        transform: str = "standard",
        clip: bool = True,
        fill: Any = None,
        max_quantiles: int = 1000,
    ) -> ContinuousColumn:
        values = s.to_numpy(dtype=np.float64)
        quantiles = levels = None
        if transform == "quantile":
            uniq, counts = np.unique(values, return_counts=True)
            # mid-rank CDF levels of the distinct values: strictly increasing, inside (0, 1)
            levels = (np.cumsum(counts) - 0.5 * counts) / values.size
            if uniq.size > max_quantiles:
                keep = np.unique(np.linspace(0, uniq.size - 1, max_quantiles).round().astype(int))
                uniq, levels = uniq[keep], levels[keep]
            quantiles, levels = uniq.tolist(), levels.tolist()
        return cls(s.name, str(s.dtype), values.min(), values.max(), quantiles, levels, clip, fill)

    def cells(self, s: pd.Series) -> np.ndarray:
        x = s.to_numpy(dtype=np.float64)
        if self.quantiles is not None:
            x = ndtri(np.interp(x, self.quantiles, self.levels))
        return x[:, None]

    def decode(self, v: np.ndarray) -> pd.Series:
        x = v[:, 0].astype(np.float64)
        if self.quantiles is not None:
            x = np.interp(ndtr(x), self.levels, self.quantiles)
        elif self.clip:
            x = np.clip(x, self.minimum, self.maximum)
        return self._series(x)

    def to_config(self) -> dict[str, Any]:
        q = self.quantiles is not None
        return super().to_config() | {
            "minimum": self.minimum,
            "maximum": self.maximum,
            "quantiles": self.quantiles.tolist() if q else None,
            "levels": self.levels.tolist() if q else None,
            "clip": self.clip,
        }


class IntegerColumn(ColumnEncoder):
    """An integer column, dequantized: ``k -> k + u``, decoded by ``floor`` into ``[min, max]``."""

    kind = "integer"
    width = 1
    discrete = True

    def __init__(self, name: Any, dtype: str, minimum: int, maximum: int, fill: Any = None):
        super().__init__(name, dtype, fill)
        self.minimum, self.maximum = int(minimum), int(maximum)

    @classmethod
    def fit(cls, s: pd.Series, fill: Any = None) -> IntegerColumn:
        return cls(s.name, str(s.dtype), int(s.min()), int(s.max()), fill)

    def cells(self, s: pd.Series) -> np.ndarray:
        values = s.to_numpy(dtype=np.float64)
        fractional = np.flatnonzero(values != np.round(values))
        if fractional.size:
            raise ValueError(
                f"integer column {self.name!r} holds non-integer values (e.g. "
                f"{values[fractional[0]]!r}); round them or refit the model on this column as "
                "floats."
            )
        return values[:, None]

    def decode(self, v: np.ndarray) -> pd.Series:
        k = np.clip(np.floor(v[:, 0]), self.minimum, self.maximum).astype(np.int64)
        return self._series(k)

    def to_config(self) -> dict[str, Any]:
        return super().to_config() | {"minimum": self.minimum, "maximum": self.maximum}


class CategoricalColumn(ColumnEncoder):
    """A categorical column over its observed ``categories`` (at least two).

    Two categories: one dimension, ``code + u`` (decoded by ``floor``, clipped to 0 or 1).
    More: a one-hot block with uniform noise on every entry, decoded by ``argmax``.

    Arguments:
        categories: the observed values (JSON-native), in code order.
        dtype_categories: all categories of a ``category`` dtype (to rebuild it), else ``None``.
        ordered: whether that ``category`` dtype is ordered.
    """

    kind = "categorical"
    discrete = True

    def __init__(
        self,
        name: Any,
        dtype: str,
        categories: Sequence[Any],
        dtype_categories: Sequence[Any] | None = None,
        ordered: bool = False,
        fill: Any = None,
    ):
        super().__init__(name, dtype, fill)
        if len(categories) < 2:
            raise ValueError(f"column {name!r}: a categorical encoder needs >= 2 categories.")
        self.categories = list(categories)
        self.dtype_categories = None if dtype_categories is None else list(dtype_categories)
        self.ordered = bool(ordered)
        self.width = 1 if len(self.categories) == 2 else len(self.categories)
        self._index = {c: i for i, c in enumerate(self.categories)}

    @classmethod
    def fit(cls, s: pd.Series, fill: Any = None) -> CategoricalColumn:
        categories, dtype_categories, ordered = _observed_categories(s, s.name)
        return cls(s.name, str(s.dtype), categories, dtype_categories, ordered, fill)

    def codes(self, s: pd.Series) -> np.ndarray:
        """Column -> int64 codes ``[N]``; unseen values are an error."""
        return _lookup_codes(
            s,
            self.name,
            self._index,
            lambda unseen: f"column {self.name!r} holds values not seen when the encoder was "
            f"fitted: {unseen}; known categories: {self.categories}.",
        )

    def cells(self, s: pd.Series) -> np.ndarray:
        codes = self.codes(s)
        if self.width == 1:
            return codes.astype(np.float64)[:, None]
        return np.eye(self.width, dtype=np.float64)[codes]

    def decode(self, v: np.ndarray) -> pd.Series:
        if self.width == 1:
            codes = np.clip(np.floor(v[:, 0]), 0, 1).astype(np.int64)
        else:
            codes = v.argmax(axis=1)
        values = [self.categories[i] for i in codes]
        return _category_series(
            values, self.name, self.dtype, self.dtype_categories, self.ordered
        )

    def to_config(self) -> dict[str, Any]:
        return super().to_config() | {
            "categories": self.categories,
            "dtype_categories": self.dtype_categories,
            "ordered": self.ordered,
        }


class ConstantColumn(ColumnEncoder):
    """A column with one observed value: no model dimension, decoded as that value."""

    kind = "constant"

    def __init__(
        self,
        name: Any,
        dtype: str,
        value: Any,
        dtype_categories: Sequence[Any] | None = None,
        ordered: bool = False,
        fill: Any = None,
    ):
        super().__init__(name, dtype, fill)
        self.value = value
        self.dtype_categories = None if dtype_categories is None else list(dtype_categories)
        self.ordered = bool(ordered)

    @classmethod
    def fit(cls, s: pd.Series, fill: Any = None) -> ConstantColumn:
        cats, ordered = None, False
        if isinstance(s.dtype, pd.CategoricalDtype):
            cats = [_native(c, s.name) for c in s.dtype.categories]
            ordered = bool(s.dtype.ordered)
        return cls(s.name, str(s.dtype), _native(s.iloc[0], s.name), cats, ordered, fill)

    def cells(self, s: pd.Series) -> np.ndarray:
        return np.zeros((len(s), 0))

    def decode(self, v: np.ndarray) -> pd.Series:
        values = np.empty(v.shape[0], dtype=object)
        values[:] = [self.value] * v.shape[0]
        if self.dtype == "category":
            dtype = pd.CategoricalDtype(self.dtype_categories, ordered=self.ordered)
            return pd.Series(values, name=self.name).astype(dtype)
        return self._series(values)

    def to_config(self) -> dict[str, Any]:
        return super().to_config() | {
            "value": self.value,
            "dtype_categories": self.dtype_categories,
            "ordered": self.ordered,
        }


_KINDS: dict[str, type[ColumnEncoder]] = {
    c.kind: c for c in (ContinuousColumn, IntegerColumn, CategoricalColumn, ConstantColumn)
}


def column_from_config(config: dict[str, Any]) -> ColumnEncoder:
    """Rebuild a column encoder from :meth:`ColumnEncoder.to_config`."""
    config = dict(config)
    kind = config.pop("kind", None)
    if kind not in _KINDS:
        raise ValueError(f"unknown column kind {kind!r}; expected one of {sorted(_KINDS)}.")
    return _KINDS[kind](**config)


def _is_categorical(s: pd.Series) -> bool:
    return (
        isinstance(s.dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(s.dtype)
        or pd.api.types.is_object_dtype(s.dtype)
        or pd.api.types.is_string_dtype(s.dtype)
    )


def fit_column(
    s: pd.Series,
    categorical: bool = False,
    transform: str = "standard",
    clip: bool = True,
    impute: str | None = None,
) -> ColumnEncoder:
    """Choose and fit the encoder for one column (see the module docstring)."""
    name = _check_name(s.name)
    s = s.rename(name)  # encoders store the name in JSON: a plain int, never numpy's
    categorical = categorical or _is_categorical(s)
    numeric = pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)
    if not categorical and not numeric:
        raise TypeError(
            f"column {name!r} has dtype {s.dtype}, which flowaug cannot model; convert it to "
            "numbers or strings first (e.g. dates to timestamps), or drop it."
        )
    if pd.api.types.is_complex_dtype(s.dtype):
        raise TypeError(
            f"column {name!r} has complex dtype {s.dtype}; split it into real and imaginary "
            "columns first."
        )
    fill = None
    present = s.dropna()
    if len(present) == 0:
        raise ValueError(f"column {name!r} has no non-missing values; drop it.")
    if impute is not None and len(present) < len(s):
        if impute == "mean" and not categorical:
            fill = float(present.astype(np.float64).mean())
            if pd.api.types.is_integer_dtype(s.dtype):
                fill = round(fill)
        else:
            fill = _native(_mode(present), name)
    s = ColumnEncoder(name, str(s.dtype), fill).prepare(s)
    if s.nunique(dropna=False) == 1:
        return ConstantColumn.fit(s, fill)
    if categorical:
        return CategoricalColumn.fit(s, fill)
    if pd.api.types.is_integer_dtype(s.dtype):
        return IntegerColumn.fit(s, fill)
    return ContinuousColumn.fit(s, transform, clip, fill)


class LabelEncoder:
    """The class column: values <-> class indices ``0 .. K-1`` (sorted observed values).

    Arguments:
        name: the label column's name.
        dtype: its pandas dtype string.
        classes: the observed label values (JSON-native) in index order.
        dtype_categories, ordered: to rebuild a ``category`` dtype.
    """

    def __init__(
        self,
        name: Any,
        dtype: str,
        classes: Sequence[Any],
        dtype_categories: Sequence[Any] | None = None,
        ordered: bool = False,
    ):
        self.name, self.dtype = name, dtype
        self.classes = list(classes)
        self.dtype_categories = None if dtype_categories is None else list(dtype_categories)
        self.ordered = bool(ordered)
        self._index = {c: i for i, c in enumerate(self.classes)}

    @classmethod
    def fit(cls, s: pd.Series) -> LabelEncoder:
        name = _check_name(s.name)
        if s.isna().any():
            raise ValueError(
                f"label column {name!r} has {int(s.isna().sum())} missing value(s); drop those "
                "rows first."
            )
        classes, dtype_categories, ordered = _observed_categories(s, name)
        return cls(name, str(s.dtype), classes, dtype_categories, ordered)

    def encode(self, s: pd.Series) -> np.ndarray:
        """Label values -> int64 class indices ``[N]``."""
        return _lookup_codes(
            s,
            self.name,
            self._index,
            lambda unknown: f"label column {self.name!r} holds classes the model does not "
            f"know: {unknown}; known classes: {self.classes}.",
        )

    def index(self, value: Any) -> int:
        """Class index of one label value."""
        value = _native(value, self.name)
        if value not in self._index:
            raise ValueError(f"unknown class {value!r}; known classes: {self.classes}.")
        return self._index[value]

    def decode(self, idx: np.ndarray) -> pd.Series:
        """Class indices ``[N]`` -> label Series of the original dtype."""
        values = [self.classes[int(i)] for i in idx]
        return _category_series(values, self.name, self.dtype, self.dtype_categories, self.ordered)

    def to_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "classes": self.classes,
            "dtype_categories": self.dtype_categories,
            "ordered": self.ordered,
        }


class TableEncoder:
    """A whole DataFrame <-> standardized float vectors ``[N, D]`` (+ class indices).

    Build it with :meth:`fit`; persist it with :meth:`to_config` / :meth:`from_config`.

    Arguments:
        columns: the feature column encoders, in the DataFrame's column order.
        order: all column names in the original order (features and label).
        label: the label encoder, or ``None``.
        mean, std: per-dimension standardization, length ``D``.

    Example:
        >>> df = pd.DataFrame({"a": [1.0, 2.5, 4.0], "n": [1, 2, 2], "c": ["x", "y", "z"],
        ...                    "y": [0, 1, 1]})
        >>> enc = TableEncoder.fit(df, label="y")
        >>> x = enc.encode(df, seed=0)
        >>> x.shape
        (3, 5)
        >>> back = enc.decode(x)
        >>> back.dtypes.astype(str).tolist(), back["c"].tolist()
        (['float64', 'int64', 'str'], ['x', 'y', 'z'])
    """

    def __init__(
        self,
        columns: Sequence[ColumnEncoder],
        order: Sequence[Any],
        label: LabelEncoder | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ):
        self.columns = list(columns)
        self.order = list(order)
        self.label = label
        width = sum(c.width for c in self.columns)
        self.mean = np.zeros(width) if mean is None else np.asarray(mean, dtype=np.float64)
        self.std = np.ones(width) if std is None else np.asarray(std, dtype=np.float64)
        if self.mean.shape != (width,) or self.std.shape != (width,):
            raise ValueError(
                f"mean and std need {width} entries (one per model dimension), got "
                f"{self.mean.shape[0]} and {self.std.shape[0]}."
            )
        self.slices: list[slice] = []
        start = 0
        for c in self.columns:
            self.slices.append(slice(start, start + c.width))
            start += c.width

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        df: pd.DataFrame,
        label: Any = None,
        categorical: Sequence[Any] | None = None,
        continuous: str = "standard",
        impute: str | None = None,
        clip: bool = True,
    ) -> TableEncoder:
        """Learn the encoders of every column of ``df``.

        Args:
            df: the training table.
            label: name of the class column (``None`` for an unconditional table).
            categorical: extra columns to treat as categorical (object, str, category and bool
                columns always are).
            continuous: ``"standard"`` (standardize) or ``"quantile"`` (Gaussianize through the
                empirical CDF; samples then stay inside the observed values' range).
            impute: ``None`` (missing values are an error), ``"mean"`` (numeric mean, rounded
                for integers; categorical mode) or ``"mode"``.
            clip: clip decoded numbers into their observed ``[min, max]``.
        """
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}.")
        if continuous not in _CONTINUOUS:
            raise ValueError(f"continuous must be one of {_CONTINUOUS}, got {continuous!r}.")
        if impute not in _IMPUTE:
            raise ValueError(f"impute must be one of {_IMPUTE}, got {impute!r}.")
        if len(df) == 0:
            raise ValueError("df has no rows; the encoder needs data to learn from.")
        if df.columns.has_duplicates:
            dup = df.columns[df.columns.duplicated()].tolist()
            raise ValueError(f"df has duplicate column names {dup}; rename them.")
        if label is not None and not isinstance(label, (str, int, np.integer)):
            raise TypeError(
                f"label must be one column name (str or int), got {type(label).__name__} "
                f"{label!r}."
            )
        if label is not None and label not in df.columns:
            raise ValueError(f"label={label!r} is not a column of df; columns: {list(df.columns)}.")
        categorical = column_names(categorical, "categorical")
        missing = [c for c in categorical if c not in df.columns]
        if missing:
            raise ValueError(
                f"categorical names unknown columns {missing}; columns: {list(df.columns)}."
            )
        columns = [
            fit_column(df[name], name in categorical, continuous, clip, impute)
            for name in df.columns
            if name != label
        ]
        lab = LabelEncoder.fit(df[label]) if label is not None else None
        enc = cls(columns, [_check_name(c) for c in df.columns], lab)
        cells = enc._cells(df)
        discrete = enc._discrete_mask()
        # moments of cells + u, u ~ U[0, 1) on discrete dimensions
        mean = cells.mean(0) + 0.5 * discrete
        var = cells.var(0) + discrete / 12.0
        enc.mean, enc.std = mean, np.sqrt(np.maximum(var, 1e-300))
        return enc

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TableEncoder:
        """Rebuild from :meth:`to_config` (e.g. after a JSON round trip)."""
        label = config.get("label")
        return cls(
            [column_from_config(c) for c in config["columns"]],
            config["order"],
            LabelEncoder(**label) if label is not None else None,
            config["mean"],
            config["std"],
        )

    def to_config(self) -> dict[str, Any]:
        """JSON-serializable state (lists of floats and strings)."""
        return {
            "columns": [c.to_config() for c in self.columns],
            "order": self.order,
            "label": None if self.label is None else self.label.to_config(),
            "mean": [float(m) for m in self.mean],
            "std": [float(s) for s in self.std],
        }

    # --- properties ---------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Number of model-space dimensions ``D``."""
        return int(self.mean.shape[0])

    @property
    def feature_names(self) -> list[Any]:
        return [c.name for c in self.columns]

    @property
    def dim_names(self) -> list[str]:
        """One readable name per model dimension (``"col"`` or ``"col=category"``)."""
        names = []
        for c in self.columns:
            if c.width == 1:
                names.append(str(c.name))
            else:
                names.extend(f"{c.name}={v}" for v in getattr(c, "categories", []))
        return names

    @property
    def num_classes(self) -> int:
        return 0 if self.label is None else len(self.label.classes)

    def _discrete_mask(self) -> np.ndarray:
        return np.concatenate(
            [np.full(c.width, float(c.discrete)) for c in self.columns] or [np.zeros(0)]
        )

    # --- numpy encode / decode ----------------------------------------------------------------
    def _check_columns(self, df: pd.DataFrame) -> None:
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}.")
        missing = [n for n in self.feature_names if n not in df.columns]
        if missing:
            raise ValueError(
                f"df lacks the column(s) {missing} the encoder was fitted with; columns: "
                f"{list(df.columns)}."
            )

    def _cells(self, df: pd.DataFrame) -> np.ndarray:
        parts = [c.cells(c.prepare(df[c.name])) for c in self.columns]
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(df), 0))

    def encode(
        self,
        df: pd.DataFrame,
        seed: int | np.random.Generator | None = None,
        dequantize: bool = True,
    ) -> np.ndarray:
        """DataFrame -> float64 ``[N, D]`` in model space (standardized).

        Args:
            df: a table with (at least) the fitted feature columns.
            seed: for the dequantization noise (an int or a numpy Generator).
            dequantize: add uniform noise inside discrete cells; ``False`` puts every discrete
                value at its cell's centre (deterministic).
        """
        self._check_columns(df)
        cells = self._cells(df)
        discrete = self._discrete_mask()
        if dequantize:
            rng = np.random.default_rng(seed)
            u = _EDGE + (1 - 2 * _EDGE) * rng.random(cells.shape)
        else:
            u = np.full(cells.shape, 0.5)
        return (cells + u * discrete - self.mean) / self.std

    def encode_labels(self, df: pd.DataFrame) -> np.ndarray | None:
        """The label column of ``df`` -> int64 class indices ``[N]``, or ``None`` if absent."""
        if self.label is None or self.label.name not in df.columns:
            return None
        return self.label.encode(df[self.label.name])

    def decode(self, x: np.ndarray | Tensor) -> pd.DataFrame:
        """Model-space ``[N, D]`` (any real values) -> DataFrame of the feature columns.

        Numbers are clipped into their observed range, integers rounded down to valid values,
        categories are always observed ones; dtypes are the original ones.
        """
        if isinstance(x, Tensor):
            x = x.detach().cpu().double().numpy()
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape [N, {self.dim}], got {list(x.shape)}.")
        v = x * self.std + self.mean
        data = {c.name: c.decode(v[:, sl]) for c, sl in zip(self.columns, self.slices, strict=True)}
        return pd.DataFrame(data, columns=self.feature_names)

    def assemble(self, features: pd.DataFrame, labels: np.ndarray | None) -> pd.DataFrame:
        """Feature columns + class indices -> a table in the original column order."""
        df = features.copy()
        if self.label is not None and labels is not None:
            lab = self.label.decode(np.asarray(labels))
            lab.index = df.index
            df[self.label.name] = lab
            return df[self.order]
        return df[[n for n in self.order if n in df.columns]]

    # --- torch: fresh dequantization noise on model-space batches -----------------------------
    def discrete_groups(self) -> list[tuple[int, int, float, float]]:
        """``(start, width, low, high)`` of every discrete column in model space.

        Width-1 groups are interval cells ``floor(v)`` clipped to ``[low, high]``; wider groups
        are one-hot blocks decoded by ``argmax``.
        """
        groups = []
        for c, sl in zip(self.columns, self.slices, strict=True):
            if not c.discrete:
                continue
            low, high = (c.minimum, c.maximum) if isinstance(c, IntegerColumn) else (0, 1)
            groups.append((sl.start, c.width, float(low), float(high)))
        return groups

    def continuous_mask(self) -> list[bool]:
        """Per model dimension: ``True`` for continuous columns."""
        return [not bool(d) for d in self._discrete_mask()]


def redequantize(
    x: Tensor,
    groups: Sequence[tuple[int, int, float, float]],
    mean: Tensor,
    std: Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Redraw the dequantization noise of the discrete dimensions of a model-space batch.

    Each discrete value is recovered from its cell (``floor`` or ``argmax``) and placed at a fresh
    uniform position in the same cell; continuous dimensions are untouched.

    Args:
        x: float tensor ``[B, D]`` in model space.
        groups: from :meth:`TableEncoder.discrete_groups`.
        mean, std: float tensors ``[D]``, the encoder's standardization.
        generator: for the noise (on ``x``'s device).

    Returns:
        float tensor ``[B, D]``.
    """
    if not groups:
        return x
    out = x.clone()
    for start, width, low, high in groups:
        sl = slice(start, start + width)
        block = x[:, sl] * std[sl] + mean[sl]
        if width == 1:
            cell = block.floor().clamp(low, high)
        else:
            cell = torch.zeros_like(block).scatter_(1, block.argmax(1, keepdim=True), 1.0)
        u = torch.rand(cell.shape, generator=generator, device=x.device, dtype=x.dtype)
        out[:, sl] = (cell + _EDGE + (1 - 2 * _EDGE) * u - mean[sl]) / std[sl]
    return out


def unlabelled_rows(labels: Any, unlabelled: Any, what: str = "y") -> np.ndarray:
    """Bool mask ``[N]`` of the rows whose label equals ``unlabelled`` (scikit-learn's
    semi-supervised convention: ``-1``), checked so that a real class is never taken for it.

    Args:
        labels: the label values ``[N]``.
        unlabelled: the marker value, or ``None`` (no row is unlabelled).
        what: the labels' name in errors.

    Raises:
        ValueError: fewer than two labelled classes remain (e.g. binary labels ``{-1, 1}``,
            where ``-1`` is a class: pass ``unlabelled_label=None``).
    """
    values = np.asarray(labels)
    if unlabelled is None or values.dtype.kind not in "iuf":
        return np.zeros(len(values), dtype=bool)
    mask = values == unlabelled
    if mask.any():
        classes = np.unique(values[~mask])
        if len(classes) < 2:
            raise ValueError(
                f"{what} marks {int(mask.sum())} rows as unlabelled ({unlabelled!r}, "
                f"scikit-learn's semi-supervised convention), leaving classes "
                f"{classes.tolist()}; if {unlabelled!r} is a class here, pass "
                "unlabelled_label=None."
            )
    return mask
