"""A whole DataFrame <-> standardized float vectors ``[N, D]`` in model space, and back.

Each column gets the encoder of its kind (:func:`fit_column`): floats a continuous one, integers a
dequantized one, ``object`` / ``str`` / ``category`` / ``bool`` columns (and those listed in
``categorical``) a categorical one, single-valued columns none. Every dimension is then
standardized. Dequantized cells are disjoint boxes of volume 1, so the flow's density bounds the
probability of the discrete values from below (Theis et al., 2016). Decoding clips numbers into
the observed ``[min, max]`` and returns exactly the original dtypes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor

from flowaug.flows.tabular import EDGE
from flowaug.tabular.categorical import CategoricalColumn, ConstantColumn, LabelEncoder
from flowaug.tabular.columns import ColumnEncoder, check_name, column_names, dtype_family, native
from flowaug.tabular.numeric import ContinuousColumn, IntegerColumn

__all__ = ["TableEncoder", "column_from_config", "fit_column"]

_IMPUTE = (None, "mean", "mode")
_CONTINUOUS = ("standard", "quantile")
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


def _fill_value(present: pd.Series, categorical: bool, impute: str, name: Any) -> Any:
    """What missing entries become: the mean (rounded for integers) or the mode."""
    if impute == "mean" and not categorical:
        fill = float(present.astype(np.float64).mean())
        return round(fill) if pd.api.types.is_integer_dtype(present.dtype) else fill
    return native(present.dropna().mode(dropna=True).iloc[0], name)


def fit_column(
    s: pd.Series,
    categorical: bool = False,
    transform: str = "standard",
    clip: bool = True,
    impute: str | None = None,
) -> ColumnEncoder:
    """Choose and fit the encoder for one column (see the module docstring)."""
    name = check_name(s.name)
    s = s.rename(name)  # encoders store the name in JSON: a plain int, never numpy's
    categorical = categorical or dtype_family(s.dtype) in ("bool", "text/category")
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
    present = s.dropna()
    if len(present) == 0:
        raise ValueError(f"column {name!r} has no non-missing values; drop it.")
    fill = None
    if impute is not None and len(present) < len(s):
        fill = _fill_value(present, categorical, impute, name)
    s = ColumnEncoder(name, str(s.dtype), fill=fill).prepare(s)
    if s.nunique(dropna=False) == 1:
        return ConstantColumn.fit(s, fill)
    if categorical:
        return CategoricalColumn.fit(s, fill)
    if pd.api.types.is_integer_dtype(s.dtype):
        return IntegerColumn.fit(s, fill)
    return ContinuousColumn.fit(s, transform, clip, fill)


def _check_fit_arguments(
    df: Any, label: Any, categorical: Any, continuous: str, impute: Any
) -> list[Any]:
    """The checks of :meth:`TableEncoder.fit`; returns ``categorical`` as a list of names."""
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
            f"label must be one column name (str or int), got {type(label).__name__} {label!r}."
        )
    if label is not None and label not in df.columns:
        raise ValueError(f"label={label!r} is not a column of df; columns: {list(df.columns)}.")
    categorical = column_names(categorical, "categorical")
    missing = [c for c in categorical if c not in df.columns]
    if missing:
        raise ValueError(
            f"categorical names unknown columns {missing}; columns: {list(df.columns)}."
        )
    return categorical


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
        ends = np.cumsum([0] + [c.width for c in self.columns])
        self.slices = [slice(int(a), int(b)) for a, b in zip(ends[:-1], ends[1:], strict=True)]

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
        categorical = _check_fit_arguments(df, label, categorical, continuous, impute)
        columns = [
            fit_column(df[name], name in categorical, continuous, clip, impute)
            for name in df.columns
            if name != label
        ]
        lab = LabelEncoder.fit(df[label]) if label is not None else None
        enc = cls(columns, [check_name(c) for c in df.columns], lab)
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

    @property
    def dim(self) -> int:
        """Number of model-space dimensions ``D``."""
        return int(self.mean.shape[0])

    @property
    def feature_names(self) -> list[Any]:
        return [c.name for c in self.columns]

    @property
    def num_classes(self) -> int:
        return 0 if self.label is None else len(self.label.classes)

    def _discrete_mask(self) -> np.ndarray:
        return np.concatenate(
            [np.full(c.width, float(c.discrete)) for c in self.columns] or [np.zeros(0)]
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
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}.")
        missing = [n for n in self.feature_names if n not in df.columns]
        if missing:
            raise ValueError(
                f"df lacks the column(s) {missing} the encoder was fitted with; columns: "
                f"{list(df.columns)}."
            )
        cells = self._cells(df)
        if dequantize:
            u = EDGE + (1 - 2 * EDGE) * np.random.default_rng(seed).random(cells.shape)
        else:
            u = np.full(cells.shape, 0.5)
        return (cells + u * self._discrete_mask() - self.mean) / self.std

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

    def discrete_groups(self) -> list[tuple[int, int, float, float]]:
        """``(start, width, low, high)`` of every discrete column in model space (the cells of
        :func:`flowaug.flows.tabular.redequantize`)."""
        groups = []
        for c, sl in zip(self.columns, self.slices, strict=True):
            if c.discrete:
                low, high = (c.minimum, c.maximum) if isinstance(c, IntegerColumn) else (0, 1)
                groups.append((sl.start, c.width, float(low), float(high)))
        return groups
