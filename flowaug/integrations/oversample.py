"""FlowOversampler: class-balancing oversampling of tables with a class-conditional flow.

Built on imbalanced-learn's ``BaseOverSampler`` and passing its estimator checks
(``fit_resample(X, y) -> (X_res, y_res)`` in the input's containers, the same
``sampling_strategy`` values; see :mod:`flowaug.integrations.sampler_inputs`), so it drops into
an ``imblearn.pipeline.Pipeline`` in place of SMOTE, with scikit-learn's estimator API
(``get_params`` / ``set_params`` / ``clone``).
Unlike SMOTE it handles categorical, integer and boolean columns natively and samples each class
exactly from its own conditional distribution.
"""

from __future__ import annotations

import numbers
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from imblearn.over_sampling.base import BaseOverSampler
from sklearn.utils import check_random_state

from flowaug._checks import check_int, check_temperature
from flowaug.flows.checks import evaluating
from flowaug.integrations.sampler_inputs import as_frame, as_targets, restore_x
from flowaug.tabular import TabularFlow, column_names, unlabelled_rows
from flowaug.tabular.model import table_model
from flowaug.training import FlowTrainer, TrainConfig

__all__ = ["DEFAULT_MODEL_KWARGS", "FlowOversampler", "resolve_sampling_strategy"]

_LABEL = "__flowaug_label__"
_STRATEGIES = ("auto", "not majority", "minority", "not minority", "all")
#: flow settings for small tables (hundreds of rows or fewer); ``model_kwargs`` override them
DEFAULT_MODEL_KWARGS: dict[str, Any] = dict(
    depth=3, hidden=32, cond_dim=8, coupling="spline", bins=8, dropout=0.1
)


def _ratio_strategy(ratio: float, counts: Counter, classes: list[Any]) -> dict[Any, int]:
    """A float ``n_minority_after / n_majority`` (binary targets) -> rows to generate."""
    if len(classes) != 2:
        raise ValueError(
            f"sampling_strategy={ratio} (a float) needs a binary target, got "
            f"{len(classes)} classes; pass a dict {{class: target count}} instead."
        )
    if not 0 < ratio <= 1:
        raise ValueError(f"a float sampling_strategy must be in (0, 1], got {ratio}.")
    minority = min(classes, key=lambda c: counts[c])
    wanted = int(max(counts.values()) * ratio)
    if wanted < counts[minority]:
        raise ValueError(
            f"sampling_strategy={ratio} asks for {wanted} minority rows but there are already "
            f"{counts[minority]}; oversampling cannot remove rows. Increase the ratio."
        )
    return {c: (wanted - counts[c] if c == minority else 0) for c in classes}


def _target_strategy(targets: Mapping, counts: Counter, classes: list[Any]) -> dict[Any, int]:
    """A dict ``{class: target count}`` -> rows to generate."""
    out = {c: 0 for c in classes}
    for c, target in targets.items():
        key = c.item() if isinstance(c, np.generic) else c
        if key not in counts:
            raise ValueError(
                f"sampling_strategy names class {c!r}, which is not in y; classes: {classes}."
            )
        if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
            raise ValueError(f"sampling_strategy[{c!r}] must be an int, got {target!r}.")
        if target < counts[key]:
            raise ValueError(
                f"sampling_strategy[{c!r}] = {target} is below the {counts[key]} rows class "
                f"{c!r} already has; oversampling cannot remove rows."
            )
        out[key] = int(target) - counts[key]
    return out


def resolve_sampling_strategy(
    sampling_strategy: str | float | Mapping[Any, int] | Callable[[np.ndarray], Mapping],
    y: np.ndarray,
) -> dict[Any, int]:
    """``sampling_strategy`` -> ``{class: number of rows to generate}`` (imbalanced-learn rules).

    Args:
        sampling_strategy: ``"auto"`` / ``"not majority"`` (every class but the majority up to
            the majority's count), ``"minority"``, ``"not minority"``, ``"all"``; a float
            ``n_minority_after / n_majority`` (binary targets only); a dict ``{class: target
            count}``; or a callable ``y -> dict``.
        y: the labels, ``[N]``.

    Returns:
        dict in class order; classes that need no rows map to 0.
    """
    counts = Counter(y.tolist())
    classes = sorted(counts, key=lambda c: (str(type(c)), c))
    strategy = sampling_strategy(y) if callable(sampling_strategy) else sampling_strategy
    if isinstance(strategy, str):
        if strategy not in _STRATEGIES:
            raise ValueError(
                f"sampling_strategy must be one of {_STRATEGIES}, a float, a dict or a "
                f"callable; got {strategy!r}."
            )
        majority = max(classes, key=lambda c: counts[c])
        minority = min(classes, key=lambda c: counts[c])
        chosen = {
            "minority": [minority],
            "not minority": [c for c in classes if c != minority],
            "all": classes,
        }.get(strategy, [c for c in classes if c != majority])
        return {c: (counts[majority] - counts[c] if c in chosen else 0) for c in classes}
    if isinstance(strategy, numbers.Real) and not isinstance(strategy, bool):
        return _ratio_strategy(strategy, counts, classes)
    if isinstance(strategy, Mapping):
        return _target_strategy(strategy, counts, classes)
    raise TypeError(
        f"sampling_strategy must be a str, a float, a dict or a callable, got "
        f"{type(strategy).__name__}."
    )


class FlowOversampler(BaseOverSampler):
    """Oversample classes of a table with a class-conditional normalizing flow.

    ``fit`` learns column encoders and trains a :class:`~flowaug.tabular.TabularFlow` on
    all rows (every class helps shape the shared flow); ``fit_resample`` then returns the real
    rows followed by synthetic rows drawn from each class's own conditional distribution.

    Arguments:
        sampling_strategy: how many rows to add (imbalanced-learn's values): ``"auto"`` (every
            class but the majority up to the majority's count), ``"minority"``, ``"not
            minority"``, ``"not majority"``, ``"all"``, a float (binary: minority/majority
            after resampling), a dict ``{class: target count}`` or a callable ``y -> dict``.
        random_state: int for reproducible results (model init, training and sampling), a
            ``RandomState``, or ``None``.
        categorical: columns to treat as categorical (names for DataFrames, indices for arrays)
            besides object, str, category and bool columns.
        temperature: latent noise scale when sampling: 1 samples the fitted distribution (best
            fidelity and, in ``benchmarks/tabular.py``, utility); ``< 1`` keeps rows more typical.
        max_steps: training steps (an upper bound: training stops early on held-out data).
        val_fraction: share of each class held out (at least one row of every class with three
            or more) to stop training early and to choose between the trained flow and its
            data-dependent initialization; ``0`` trains ``max_steps`` on everything, no choice.
        continuous: ``"quantile"`` (default: Gaussianize float columns through their empirical
            CDF; synthetic values stay inside the observed range) or ``"standard"``.
        impute: ``None`` (missing values raise), ``"mean"`` or ``"mode"``.
        model_kwargs: :class:`TabularFlow` arguments overriding ``DEFAULT_MODEL_KWARGS``.
        train_kwargs: :class:`flowaug.training.TrainConfig` fields overriding the defaults.
        unlabelled_label: the label of unlabelled rows (scikit-learn's semi-supervised
            convention: ``-1``). They shape the column encoders and the flow (through its own
            class posterior) and are not returned by ``fit_resample``, nor counted by
            ``sampling_strategy``. ``None``: every label is a class (e.g. binary ``{-1, 1}``,
            which is refused under the default, since one class would remain).

    Attributes:
        sampling_strategy_: ``{class: rows generated}`` from the last ``fit``.
        model_: the trained :class:`TabularFlow` (``model_.sample_frame`` draws more rows).
        history_: the trainer's history (``None`` when nothing could be held out).
        selected_: ``"trained"`` or ``"init"``: which model validated better.
        n_unlabelled_: rows of the last ``fit`` labelled ``unlabelled_label``.

    Example:
        >>> from sklearn.datasets import load_iris
        >>> X, y = load_iris(return_X_y=True, as_frame=True)
        >>> X, y = X.iloc[:70], y.iloc[:70]  # 50 of class 0, 20 of class 1
        >>> sampler = FlowOversampler(random_state=0, max_steps=20)
        >>> X_res, y_res = sampler.fit_resample(X, y)
        >>> y_res.value_counts().sort_index().tolist(), list(X_res.columns) == list(X.columns)
        ([50, 50], True)
    """

    def __init__(
        self,
        sampling_strategy: str | float | Mapping[Any, int] | Callable = "auto",
        random_state: int | np.random.RandomState | None = None,
        categorical: Sequence[Any] | None = None,
        temperature: float = 1.0,
        max_steps: int = 400,
        val_fraction: float = 0.2,
        continuous: str = "quantile",
        impute: str | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        train_kwargs: Mapping[str, Any] | None = None,
        unlabelled_label: Any = -1,
    ):
        self.sampling_strategy = sampling_strategy
        self.random_state = random_state
        self.categorical = categorical
        self.temperature = temperature
        self.max_steps = max_steps
        self.val_fraction = val_fraction
        self.continuous = continuous
        self.impute = impute
        self.model_kwargs = model_kwargs
        self.train_kwargs = train_kwargs
        self.unlabelled_label = unlabelled_label

    # --- fitting ------------------------------------------------------------------------------
    def _categorical_names(self, frame: pd.DataFrame, kind: str) -> list[Any] | None:
        """``categorical`` as column names of ``frame`` (``x{i}`` for the columns of an array)."""
        if self.categorical is None:
            return None
        names = column_names(self.categorical, "categorical")
        if kind == "array":
            width = frame.shape[1]
            bad = [
                c
                for c in names
                if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c < width
            ]
            if bad:
                raise ValueError(
                    f"categorical must hold column indices in [0, {width - 1}] for an array X, "
                    f"got {bad[0]!r}."
                )
            return [f"x{c}" for c in names]
        unknown = [c for c in names if c not in frame.columns]
        if unknown:
            raise ValueError(
                f"categorical names a column X does not have: {unknown[0]!r}; columns: "
                f"{list(frame.columns)}."
            )
        return names

    def fit(self, X: Any, y: Any) -> FlowOversampler:
        """Learn encoders and train the flow on ``(X, y)``; sets ``sampling_strategy_``.

        Args:
            X: numpy array ``[N, F]`` or DataFrame.
            y: labels ``[N]`` (array, list or Series).
        """
        frame, kind = as_frame(X)
        self._fit(frame, kind, as_targets(y, len(frame)).labels)
        return self

    def _fit(self, frame: pd.DataFrame, kind: str, y: Any) -> np.ndarray:
        """:meth:`fit` on checked inputs; returns the mask of the unlabelled rows."""
        check_temperature(self.temperature)
        check_int("max_steps", self.max_steps, 1)
        if not (isinstance(self.val_fraction, numbers.Real) and 0 <= self.val_fraction < 1):
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}.")
        labels = np.asarray(y)
        unlabelled = unlabelled_rows(labels, self.unlabelled_label)
        self.n_unlabelled_ = int(unlabelled.sum())
        classes = pd.unique(labels[~unlabelled])
        if len(classes) < 2:
            raise ValueError(
                f"y needs at least 2 classes to oversample, got only {classes.tolist()}; "
                "check the label column."
            )
        self.sampling_strategy_ = resolve_sampling_strategy(
            self.sampling_strategy, labels[~unlabelled]
        )
        self._seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
        label = _LABEL
        while label in frame.columns:
            label += "_"
        model, x, y_idx, pool = table_model(
            frame.assign(**{label: labels}),
            label,
            unlabelled,
            self._seed,
            categorical=self._categorical_names(frame, kind),
            continuous=self.continuous,
            impute=self.impute,
            **{**DEFAULT_MODEL_KWARGS, **dict(self.model_kwargs or {})},
        )
        # what sample() calls the label column: y's own name where it has one that X lacks
        name = y.name if isinstance(y, pd.Series) and y.name is not None else "y"
        while name in frame.columns:
            name = f"{name}_"
        self._label_name = name
        self.history_ = self._train(model, x, y_idx, pool)
        self.model_ = model.eval()
        self.n_features_in_ = frame.shape[1]
        if kind == "frame":
            self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        return unlabelled

    def _train(self, model: TabularFlow, x: torch.Tensor, y: torch.Tensor, pool: torch.Tensor):
        """Initialize, train with early stopping, keep whichever of the two validates better.

        ``pool`` holds the unlabelled rows (``y == unlabelled_label``), which the flow learns
        from through its own class posterior (:mod:`flowaug.training.semi_supervised`).

        Small tables overfit fast: with a few dozen rows the held-out likelihood is often best
        at the data-dependent initialization (a per-class Gaussian in flow form, see
        :meth:`TabularFlow.initialize`), so that model competes with the trained one. When it
        wins, it is re-initialized on every row (validation rows included).
        """
        train_idx, val_idx = np.arange(x.shape[0]), np.arange(0)
        if self.val_fraction > 0:
            train_idx, val_idx = _stratified_split(y.numpy(), self.val_fraction, self._seed)
        model.initialize(x[train_idx], y[train_idx])  # the trainer keeps an initialized model
        if self.val_fraction > 0 and len(val_idx) == 0:
            # no class has enough rows to hold any out: nothing can tell training from overfitting
            model.initialize(x, y)
            self.selected_ = "init"
            return None
        start = {k: v.clone() for k, v in model.state_dict().items()}
        val = (x[val_idx], y[val_idx]) if len(val_idx) else None
        init_bpd = _mean_bpd(model, *val) if val is not None else None
        settings: dict[str, Any] = dict(
            batch_size=int(min(64, len(train_idx))), lr=1e-3, weight_decay=1e-3,
            max_steps=int(self.max_steps), warmup_steps=0, eval_every=10, patience=5,
            seed=self._seed, progress=False, cpu=True,
        )
        settings.update(dict(self.train_kwargs or {}))
        history = FlowTrainer(model, TrainConfig(**settings)).fit(
            (x[train_idx], y[train_idx]), val, unlabelled=pool if len(pool) else None
        )
        self.selected_ = "trained"
        best = history.best_val_bpd
        if init_bpd is not None and (best is None or not best < init_bpd):
            model.load_state_dict(start)
            model.initialize(x, y)
            self.selected_ = "init"
        return history

    # --- resampling ---------------------------------------------------------------------------
    def sample(self, n_per_class: int | Mapping[Any, int], seed: int | None = None) -> pd.DataFrame:
        """Synthetic rows from the fitted flow: X's columns, then the label column (named like
        ``y`` when it was a named Series, else ``"y"``).

        Args:
            n_per_class: rows per class, an int or ``{class: rows}``.
            seed: for reproducible draws.
        """
        if not hasattr(self, "model_"):
            raise ValueError("this FlowOversampler is not fitted yet; call fit(X, y) first.")
        return self.model_.sample_frame(n_per_class, self.temperature, seed).rename(
            columns={self.model_.encoder.label.name: self._label_name}
        )

    def fit_resample(self, X: Any, y: Any) -> tuple[Any, Any]:
        """Fit, then return the real rows followed by the synthetic ones.

        Returns:
            ``(X_res, y_res)`` of the input's kinds: a DataFrame (same columns and dtypes,
            sparse ones too), a numpy array (same dtype) or a list of rows for ``X``; a Series
            (same name and dtype), a one-column DataFrame, a one-vs-all array, a numpy array, or
            a list next to a list ``X``, for ``y``.
        """
        frame, kind = as_frame(X)
        targets = as_targets(y, len(frame))
        labelled = ~self._fit(frame, kind, targets.labels)
        frame, labels = frame[labelled].reset_index(drop=True), np.asarray(targets.labels)[labelled]
        wanted = {c: n for c, n in self.sampling_strategy_.items() if n > 0}
        new_x, new_y = frame.iloc[:0], labels[:0]
        if wanted:
            synth = self.model_.sample_frame(wanted, self.temperature, self._seed)
            label = self.model_.encoder.label.name
            new_x, new_y = synth.drop(columns=[label]), synth[label].to_numpy()
            new_y = new_y.astype(labels.dtype, copy=False)
        if kind == "frame":
            X_res = pd.concat([frame, new_x.astype(frame.dtypes.to_dict())], ignore_index=True)
        else:
            real = np.asarray(X)[labelled]
            X_res = np.concatenate([real, new_x.to_numpy(dtype=real.dtype)])
        y_res = np.concatenate([labels, new_y])
        if isinstance(targets.labels, pd.Series):
            y_res = pd.Series(y_res, name=targets.labels.name).astype(targets.labels.dtype)
        return restore_x(X, X_res), targets.restore(y_res, isinstance(X, (list, tuple)))

    def _fit_resample(self, X: Any, y: Any) -> tuple[Any, Any]:
        # imbalanced-learn's abstract hook; fit_resample above does the work on X as given
        return self.fit_resample(X, y)

    def __sklearn_tags__(self):  # scikit-learn >= 1.6: declare the input we accept
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        return tags


def _mean_bpd(model: TabularFlow, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean bits/dim of model-space rows, in eval mode (prepare_batch's noise included)."""
    noise = torch.Generator().manual_seed(0)
    with evaluating(model):
        bpd = model.bits_per_dim(x.to(model.device), y.to(model.device), generator=noise)
    return float(bpd.mean())


def _stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``fraction`` of every class with >= 3 rows (at least one row each).

    Not :func:`flowaug.training.split_index`: that one draws other rows (scikit-learn's
    stratified shuffle), and the rows held out here decide which flow is kept."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = max(1, int(round(fraction * len(idx)))) if len(idx) >= 3 else 0
        val.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
