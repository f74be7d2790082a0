"""Does a table have the columns a fitted :class:`~flowaug.tabular.TableEncoder` expects?

A table model writes synthetic rows by column name, so a table with other columns would get
rows of NaN (a renamed column), lose a column silently (a missing one) or get values of the
wrong type. :func:`check_frame` refuses such a table before anything is sampled: names, order,
dtypes and categories must be the model's.

Example:
    >>> import pandas as pd
    >>> from flowaug.tabular import TableEncoder
    >>> enc = TableEncoder.fit(pd.DataFrame({"a": [0.5, 1.5, 2.0], "y": [0, 1, 1]}), label="y")
    >>> check_frame(enc, pd.DataFrame({"b": [1.0], "y": [0]}), exact=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: df does not have the model's columns: missing ['a'], unexpected ['b']; ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from flowaug.tabular.categorical import CategoricalColumn
from flowaug.tabular.columns import dtype_family
from flowaug.tabular.encoder import TableEncoder

__all__ = ["dtype_family", "check_frame", "short_names"]


def short_names(names: Sequence[Any], limit: int = 5) -> str:
    """``names`` as a list, the first ``limit`` only when there are more."""
    names = list(names)
    shown = repr(names[:limit])
    return shown if len(names) <= limit else f"{shown[:-1]}, ...] ({len(names)} in all)"


def _fix(what: str) -> str:
    return f"pass the table the model was fitted on, or fit a model on {what}."


def check_frame(encoder: TableEncoder, df: Any, what: str = "df", exact: bool = False) -> None:
    """Refuse a table whose columns do not match the ones ``encoder`` was fitted on.

    Args:
        encoder: the model's column encoders.
        df: the table.
        what: how the table is named in errors (``"df"``, ``"--data 'x.csv'"``).
        exact: also refuse extra columns and another column order (a data set that synthetic
            rows are added to); otherwise only the model's feature columns are looked at.

    Checks dtypes by family (a float column must stay float, an integer one integer, text
    text); without ``exact`` integer data in a float column, and whole floats in an integer
    one, are accepted. Categorical columns may only hold the categories the model knows.

    Raises:
        TypeError: ``df`` is not a DataFrame.
        ValueError: naming the columns, dtypes or values that differ, and what to do.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, got {type(df).__name__}.")
    expected = list(encoder.order) if exact else encoder.feature_names
    got = list(df.columns)
    missing = [n for n in expected if n not in got]
    unexpected = [n for n in got if n not in expected] if exact else []
    if missing or unexpected:
        parts = [f"missing {short_names(missing)}"] if missing else []
        parts += [f"unexpected {short_names(unexpected)}"] if unexpected else []
        raise ValueError(
            f"{what} does not have the model's columns: {', '.join(parts)}; the model was "
            f"fitted on {short_names(expected)}. {_fix('this one').capitalize()}"
        )
    if exact and got != expected:
        raise ValueError(
            f"{what} has the model's columns in another order: {short_names(got)}, the "
            f"model's {short_names(expected)}; reorder them (df[model_columns]) or fit a model "
            "on this table."
        )
    for column in encoder.columns:
        data, model = dtype_family(df[column.name].dtype), dtype_family(column.dtype)
        numbers = {data, model} <= {"integer", "float"}
        if data != model and not (numbers and not exact):
            raise ValueError(
                f"column {column.name!r} of {what} has dtype {df[column.name].dtype} ({data}), "
                f"but the model was fitted on {column.dtype} ({model}); convert it "
                f"(.astype({column.dtype!r})) or {_fix('this table')}"
            )
        if isinstance(column, CategoricalColumn):
            column.codes(df[column.name].dropna())  # unseen categories raise, named
    label = encoder.label
    if label is not None and label.name in df.columns:
        label.encode(df[label.name].dropna())  # unknown classes raise, named
