"""Number columns: floats (the value, optionally quantile-Gaussianized) and integers (uniform
dequantization ``k + u``, decoded by ``floor``). Decoding clips into the observed range."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from flowaug.tabular.columns import ColumnEncoder

__all__ = ["ContinuousColumn", "IntegerColumn"]


@dataclasses.dataclass(eq=False, repr=False)
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
    minimum: float
    maximum: float
    quantiles: list[float] | None = None
    levels: list[float] | None = None
    clip: bool = True

    def __post_init__(self) -> None:
        self.minimum, self.maximum = float(self.minimum), float(self.maximum)

    @classmethod
    def fit(
        cls, s: pd.Series, transform: str = "standard", clip: bool = True, fill: Any = None
    ) -> ContinuousColumn:
        values = s.to_numpy(dtype=np.float64)
        quantiles = levels = None
        if transform == "quantile":
            uniq, counts = np.unique(values, return_counts=True)
            # mid-rank CDF levels of the distinct values: strictly increasing, inside (0, 1)
            levels = (np.cumsum(counts) - 0.5 * counts) / values.size
            if uniq.size > 1000:  # at most 1000 reference points
                keep = np.unique(np.linspace(0, uniq.size - 1, 1000).round().astype(int))
                uniq, levels = uniq[keep], levels[keep]
            quantiles, levels = uniq.tolist(), levels.tolist()
        minimum, maximum = values.min(), values.max()
        return cls(s.name, str(s.dtype), minimum, maximum, quantiles, levels, clip, fill=fill)

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
        return pd.Series(x, name=self.name).astype(self.dtype)


@dataclasses.dataclass(eq=False, repr=False)
class IntegerColumn(ColumnEncoder):
    """An integer column, dequantized: ``k -> k + u``, decoded by ``floor`` into ``[min, max]``."""

    kind = "integer"
    width = 1
    discrete = True
    minimum: int
    maximum: int

    @classmethod
    def fit(cls, s: pd.Series, fill: Any = None) -> IntegerColumn:
        return cls(s.name, str(s.dtype), int(s.min()), int(s.max()), fill=fill)

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
        return pd.Series(k, name=self.name).astype(self.dtype)
