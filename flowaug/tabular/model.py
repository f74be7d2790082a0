"""TabularFlow: the table model, a :class:`~flowaug.flows.tabular.FeatureFlow` with column
encoders, so that DataFrames go in and synthetic DataFrames of the same dtypes come out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from flowaug.flows.tabular import FeatureFlow
from flowaug.tabular import frames
from flowaug.tabular.encoder import TableEncoder
from flowaug.tabular.schema import check_frame

__all__ = ["TabularFlow", "table_model"]


class TabularFlow(FeatureFlow):
    """Class-conditional flow for feature vectors ``[B, D]``, with optional column encoders.

    The flow is :class:`~flowaug.flows.tabular.FeatureFlow` (same arguments, same tensors in and
    out). Built with :meth:`from_frame`, the model holds a :class:`~flowaug.tabular.TableEncoder`:
    :meth:`encode_frame` turns a DataFrame into model-space tensors and :meth:`sample_frame`
    returns synthetic rows with the original columns, dtypes, categories and label values. The
    encoder lives in ``config``, so ``save_pretrained`` / ``from_pretrained`` restore it.

    Arguments:
        num_features, num_classes, *flow_args, **flow_kwargs: as for
            :class:`~flowaug.flows.tabular.FeatureFlow` (``depth``, ``hidden``, ``coupling``,
            ...; ``num_features`` is ``encoder.dim`` when built from a frame).
        columns: a :meth:`TableEncoder.to_config` dict (set by :meth:`from_frame`), or ``None``.

    Example:
        >>> df = pd.DataFrame({"a": [0.1, 0.5, 0.9, 1.3], "k": [1, 2, 2, 3],
        ...                    "c": ["x", "y", "x", "z"], "label": ["no", "no", "yes", "yes"]})
        >>> model = TabularFlow.from_frame(df, label="label", depth=2, hidden=16)
        >>> x, y = model.encode_frame(df, seed=0)
        >>> x.shape, y.tolist()
        (torch.Size([4, 5]), [0, 0, 1, 1])
        >>> model.log_prob(x, y).shape
        torch.Size([4])
        >>> synth = model.sample_frame({"yes": 3}, seed=0)
        >>> list(synth.columns), synth.dtypes.astype(str).tolist(), synth["label"].tolist()
        (['a', 'k', 'c', 'label'], ['float64', 'int64', 'str', 'str'], ['yes', 'yes', 'yes'])
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int | None = None,
        *flow_args: Any,
        columns: Mapping[str, Any] | None = None,
        **flow_kwargs: Any,
    ):
        enc = None if columns is None else TableEncoder.from_config(dict(columns))
        cells = {} if enc is None else dict(cells=enc.discrete_groups(), mean=enc.mean, std=enc.std)
        super().__init__(num_features, num_classes, *flow_args, **flow_kwargs, **cells)
        self.encoder = enc
        self.config["columns"] = None if enc is None else enc.to_config()
        if enc is None:
            return
        num_features, num_classes = self.config["num_features"], self.num_classes
        if enc.dim != num_features or enc.num_classes != num_classes:
            raise ValueError(
                f"columns describe {enc.dim} model dimensions and {enc.num_classes} classes, "
                f"but num_features={num_features} and num_classes={num_classes}; build the "
                "model with TabularFlow.from_frame."
            )
        if enc.label is not None:
            self.class_names = [str(c) for c in enc.label.classes]

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        label: Any = None,
        categorical: Sequence[Any] | None = None,
        continuous: str = "standard",
        impute: str | None = None,
        clip: bool = True,
        **model_kwargs: Any,
    ) -> TabularFlow:
        """An untrained model with column encoders learned from ``df``: the training table,
        its class column ``label`` (``None``: an unconditional model), and ``categorical``,
        ``continuous``, ``impute`` and ``clip`` as :meth:`TableEncoder.fit` takes them (extra
        categorical columns; ``"standard"`` or ``"quantile"``; ``None``, ``"mean"`` or
        ``"mode"`` for missing values; sampled numbers kept in each column's observed range).
        ``model_kwargs`` are the model's (``depth``, ``hidden``, ...: see the class docstring).
        """
        for key in ("num_features", "num_classes", "columns"):
            if key in model_kwargs:
                raise TypeError(f"from_frame sets {key} from the data; do not pass it.")
        enc = TableEncoder.fit(df, label, categorical, continuous, impute, clip)
        if enc.dim == 0:
            raise ValueError(
                "every feature column of df is constant (or there are none): nothing to model."
            )
        return cls(enc.dim, enc.num_classes, columns=enc.to_config(), **model_kwargs)

    def _require_encoder(self, what: str) -> TableEncoder:
        if self.encoder is None:
            raise ValueError(
                f"{what} needs column encoders; build the model with TabularFlow.from_frame(df)."
            )
        return self.encoder

    def check_frame(self, df: pd.DataFrame, what: str = "df", exact: bool = False) -> None:
        """Refuse a table whose columns are not the model's (names, dtypes, categories; with
        ``exact`` also no other columns and the same order). See
        :func:`flowaug.tabular.schema.check_frame`."""
        check_frame(self._require_encoder("check_frame"), df, what, exact)

    def encode_frame(
        self, df: pd.DataFrame, seed: int | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """DataFrame -> model-space tensors.

        Args:
            df: a table with the columns the model was built from (same dtype families and
                categories; other columns are ignored).
            seed: for the dequantization noise of discrete columns.

        Returns:
            ``x``: float tensor ``[N, D]`` (the model's dtype and device), and ``y``: LongTensor
            ``[N]`` of class indices, or ``None`` if ``df`` has no label column.
        """
        enc = self._require_encoder("encode_frame")
        self.check_frame(df)
        x, y = enc.encode(df, seed=seed), enc.encode_labels(df)
        param = next(self.parameters())
        xt = torch.as_tensor(x, dtype=param.dtype, device=param.device)
        yt = None if y is None else torch.as_tensor(y, dtype=torch.long, device=param.device)
        return xt, yt

    def decode_frame(self, x: Tensor, y: Tensor | None = None) -> pd.DataFrame:
        """Model-space ``x [N, D]`` (+ class indices ``y [N]``) -> DataFrame of original dtypes."""
        enc = self._require_encoder("decode_frame")
        labels = None if y is None else torch.as_tensor(y).detach().cpu().numpy()
        return enc.assemble(enc.decode(x), labels)

    def _class_counts(self, n_per_class: int | Mapping[Any, int]) -> list[int]:
        enc = self._require_encoder("sample_frame")

        def check(n: Any, what: str) -> int:
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
                raise ValueError(f"{what} must be an integer >= 0, got {n!r}.")
            return int(n)

        if not isinstance(n_per_class, Mapping):
            return [check(n_per_class, "n_per_class")] * max(self.num_classes, 1)
        if enc.label is None:
            raise ValueError("n_per_class is a dict but the model is unconditional; pass an int.")
        counts = [0] * self.num_classes
        for value, n in n_per_class.items():
            counts[enc.label.index(value)] = check(n, f"n_per_class[{value!r}]")
        return counts

    def sample_frame(
        self,
        n_per_class: int | Mapping[Any, int],
        temperature: float = 1.0,
        seed: int | None = None,
    ) -> pd.DataFrame:
        """Synthetic rows as a DataFrame with the original columns, dtypes and label values.

        Args:
            n_per_class: rows per class (an int for every class, or ``{label value: rows}``).
            temperature: latent noise scale; ``< 1`` gives more typical, less diverse rows.
            seed: for reproducible draws (same seed, same rows).

        Returns:
            DataFrame in the training table's column order, classes in label order.

        Raises:
            ValueError: the rows cannot fit in memory (the estimate is in the message). Large
                counts are generated and decoded in chunks of ``FRAME_CHUNK_ROWS`` rows.
        """
        counts = self._class_counts(n_per_class)
        frames.check_frame_size(self, sum(counts), n_per_class)
        return frames.sample_frame(self, counts, temperature, seed)


def table_model(
    table: pd.DataFrame, label: Any, unlabelled: np.ndarray, seed: int, **from_frame: Any
) -> tuple[TabularFlow, Tensor, Tensor | None, Tensor]:
    """A fresh table model for ``table`` and the table in its model space, on the CPU.

    ``TabularFlow.from_frame(table, label=label, **from_frame)`` is built under torch seed
    ``seed`` and encodes ``table`` with dequantization seed ``seed``. The rows ``unlabelled``
    marks (bool ``[N]``) shape the column encoders, a labelled class standing in for their
    label, and come back apart.

    Returns:
        ``(model, x [n, D], y [n] or None, pool [N - n, D])``: the labelled rows and the others.
    """
    if unlabelled.any():
        values = table[label].to_numpy()
        table = table.assign(**{label: np.where(unlabelled, values[~unlabelled][0], values)})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TabularFlow.from_frame(table, label=label, **from_frame)
    x, y = model.encode_frame(table, seed=seed)
    keep = torch.as_tensor(~unlabelled)
    return model, x[keep].cpu(), None if y is None else y[keep].cpu(), x[~keep].cpu()
