"""Category columns (over two or more observed values, or a single one) and the class column."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from flowaug.tabular.columns import (
    ColumnEncoder,
    category_series,
    check_name,
    lookup_codes,
    native,
    observed_values,
)

__all__ = ["CategoricalColumn", "ConstantColumn", "LabelEncoder", "unlabelled_rows"]


@dataclasses.dataclass(eq=False, repr=False)
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
    categories: list[Any]
    dtype_categories: list[Any] | None = None
    ordered: bool = False

    def __post_init__(self) -> None:
        if len(self.categories) < 2:
            raise ValueError(f"column {self.name!r}: a categorical encoder needs >= 2 categories.")
        self.width = 1 if len(self.categories) == 2 else len(self.categories)
        self._index = {c: i for i, c in enumerate(self.categories)}

    @classmethod
    def fit(cls, s: pd.Series, fill: Any = None) -> CategoricalColumn:
        return cls(s.name, str(s.dtype), *observed_values(s, s.name), fill=fill)

    def codes(self, s: pd.Series) -> np.ndarray:
        """Column -> int64 codes ``[N]``; unseen values are an error."""
        return lookup_codes(
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
        return category_series(values, self.name, self.dtype, self.dtype_categories, self.ordered)


@dataclasses.dataclass(eq=False, repr=False)
class ConstantColumn(ColumnEncoder):
    """A column with one observed value: no model dimension, decoded as that value."""

    kind = "constant"
    value: Any
    dtype_categories: list[Any] | None = None
    ordered: bool = False

    @classmethod
    def fit(cls, s: pd.Series, fill: Any = None) -> ConstantColumn:
        _, categories, ordered = observed_values(s, s.name)
        value = native(s.iloc[0], s.name)
        return cls(s.name, str(s.dtype), value, categories, ordered, fill=fill)

    def cells(self, s: pd.Series) -> np.ndarray:
        return np.zeros((len(s), 0))

    def decode(self, v: np.ndarray) -> pd.Series:
        values = [self.value] * v.shape[0]
        return category_series(values, self.name, self.dtype, self.dtype_categories, self.ordered)


@dataclasses.dataclass(eq=False)
class LabelEncoder:
    """The class column: values <-> class indices ``0 .. K-1`` (sorted observed values).

    Arguments:
        name: the label column's name.
        dtype: its pandas dtype string.
        classes: the observed label values (JSON-native) in index order.
        dtype_categories, ordered: to rebuild a ``category`` dtype.
    """

    name: Any
    dtype: str
    classes: list[Any]
    dtype_categories: list[Any] | None = None
    ordered: bool = False

    def __post_init__(self) -> None:
        self._index = {c: i for i, c in enumerate(self.classes)}

    @classmethod
    def fit(cls, s: pd.Series) -> LabelEncoder:
        name = check_name(s.name)
        if s.isna().any():
            raise ValueError(
                f"label column {name!r} has {int(s.isna().sum())} missing value(s); drop those "
                "rows first."
            )
        return cls(name, str(s.dtype), *observed_values(s, name))

    def encode(self, s: pd.Series) -> np.ndarray:
        """Label values -> int64 class indices ``[N]``."""
        return lookup_codes(
            s,
            self.name,
            self._index,
            lambda unknown: f"label column {self.name!r} holds classes the model does not "
            f"know: {unknown}; known classes: {self.classes}.",
        )

    def index(self, value: Any) -> int:
        """Class index of one label value."""
        value = native(value, self.name)
        if value not in self._index:
            raise ValueError(f"unknown class {value!r}; known classes: {self.classes}.")
        return self._index[value]

    def decode(self, idx: np.ndarray) -> pd.Series:
        """Class indices ``[N]`` -> label Series of the original dtype."""
        values = [self.classes[int(i)] for i in idx]
        return category_series(values, self.name, self.dtype, self.dtype_categories, self.ordered)

    def to_config(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


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
