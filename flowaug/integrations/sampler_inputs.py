"""What :class:`~flowaug.integrations.oversample.FlowOversampler` accepts as ``X`` and ``y``, and
the containers it answers in: imbalanced-learn's conventions, which its estimator checks test.

``X``: a DataFrame (any dtypes, sparse columns too), a 2-D array or a list of rows. ``y``: a
1-D array, list or Series, a one-column DataFrame or ``[N, 1]`` array, or a one-vs-all encoded
``[N, K]`` array (each row one 1). ``fit_resample`` returns each in the kind it came in, except
that a list ``y`` next to an array or DataFrame ``X`` comes back as an array.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from imblearn.utils import check_target_type
from sklearn.utils.multiclass import check_classification_targets

__all__ = ["Targets", "as_frame", "as_targets", "restore_x"]


def as_frame(X: Any) -> tuple[pd.DataFrame, str]:
    """``X`` -> (DataFrame with string column names, input kind ``"frame"`` / ``"array"``).

    Sparse DataFrame columns are made dense (:func:`restore_x` makes them sparse again).
    """
    if isinstance(X, pd.DataFrame):
        sparse = {c: d.subtype for c, d in X.dtypes.items() if isinstance(d, pd.SparseDtype)}
        return X.astype(sparse).reset_index(drop=True), "frame"
    if isinstance(X, (list, tuple)):
        X = np.asarray(X)
    if not isinstance(X, np.ndarray):
        raise TypeError(f"X must be a numpy array or a pandas DataFrame, got {type(X).__name__}.")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D [n_samples, n_features], got shape {list(X.shape)}.")
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    if X.dtype == object:
        frame = frame.infer_objects()
    return frame, "array"


def restore_x(X: Any, X_res: Any) -> Any:
    """The resampled ``X_res`` in the container ``X`` came in: a list of rows for a list, the
    sparse dtypes again for a DataFrame with sparse columns."""
    if isinstance(X, (list, tuple)):
        return np.asarray(X_res).tolist()
    if isinstance(X, pd.DataFrame):
        sparse = {c: d for c, d in X.dtypes.items() if isinstance(d, pd.SparseDtype)}
        return X_res.astype(sparse) if sparse else X_res
    return X_res


@dataclass
class Targets:
    """``y`` as 1-D labels (``labels``; a Series where ``y`` was named), and how it came in."""

    labels: Any
    kind: str  # "array", "list", "series", "frame" or "one-vs-all"
    column: Any = None
    dtype: Any = None
    classes: int | None = None  # one-vs-all: the number of columns

    def restore(self, y_res: Any, x_is_list: bool = False) -> Any:
        """Resampled 1-D labels (array or Series) in ``y``'s own container; a list ``y`` comes
        back as a list only next to a list ``X`` (lists in, lists out), else as an array."""
        if self.kind == "list" and x_is_list:
            return np.asarray(y_res).tolist()
        if self.kind == "frame":
            return pd.DataFrame({self.column: np.asarray(y_res)}).astype({self.column: self.dtype})
        if self.kind == "one-vs-all":  # one row of the identity per label, in y's dtype
            return np.eye(self.classes, dtype=self.dtype)[np.asarray(y_res).astype(np.int64)]
        return y_res


def as_targets(y: Any, n: int) -> Targets:
    """Check ``y`` for ``n`` rows of ``X`` and give its 1-D labels.

    Raises:
        ValueError: ``y`` has another length, missing values, continuous values ("Unknown label
            type") or several labels per row (multilabel).
    """
    if isinstance(y, pd.DataFrame):
        if y.shape[1] != 1:
            raise ValueError(f"y must be 1-D, got a DataFrame with {y.shape[1]} columns.")
        column = y.columns[0]
        targets = Targets(y.iloc[:, 0], "frame", column, y.dtypes.iloc[0])
    elif isinstance(y, pd.Series):
        targets = Targets(y, "series")
    else:
        values = np.asarray(y)
        kind = "list" if isinstance(y, (list, tuple)) else "array"
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        elif values.ndim == 2 and values.shape[0] == n:
            values, one_vs_all = check_target_type(values, indicate_one_vs_all=True)
            if one_vs_all:
                kind = "one-vs-all"
        if values.ndim != 1:
            raise ValueError(f"y must be 1-D [n_samples], got shape {list(values.shape)}.")
        targets = Targets(values, kind)
        if kind == "one-vs-all":
            targets.classes, targets.dtype = np.asarray(y).shape[1], np.asarray(y).dtype
    values = np.asarray(targets.labels)
    if values.shape[0] != n:
        raise ValueError(f"y has {values.shape[0]} labels for {n} rows of X.")
    if pd.isna(values).any():
        raise ValueError("y contains missing values; drop those rows first.")
    check_classification_targets(values)  # "Unknown label type" for continuous values
    return targets
