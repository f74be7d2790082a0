"""How good and how private synthetic data is: memorization and fidelity.

Every function takes samples as ``[N, D]`` arrays or tensors (images are flattened:
``[N, C, H, W] -> [N, C*H*W]``), so image and tabular code share them. Put real and synthetic
data on the same scale first (e.g. both images in ``[0, 1]``, or both tables encoded).

- Memorization (:func:`memorization_report`): the distance from each synthetic sample to its
  closest training sample (DCR), compared with the typical distance between a training sample
  and its nearest other training sample. A ratio well below 1 means the synthetic sample sits
  closer to a training record than training records sit to each other: a near-copy.
- Fidelity: maximum mean discrepancy (:func:`mmd_rbf`), k-NN precision/recall
  (:func:`knn_precision_recall`), per-dimension moments (:func:`moment_gaps`) and agreement of
  the flow's own classifier with the intended labels (:func:`label_agreement`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowaug.sampling import eval_mode

__all__ = [
    "as_matrix", "fidelity_report", "knn_precision_recall", "label_agreement",
    "memorization_report", "mmd_rbf", "moment_gaps", "nearest_neighbors", "predict", "summary",
]


def as_matrix(x: Any, name: str = "x") -> Tensor:
    """Samples (tensors, numpy arrays, pandas DataFrames of numeric columns) as a float64 CPU
    tensor ``[N, D]``, all but the first dimension flattened; uint8 images are taken as
    ``0..255`` values, so convert real and synthetic data alike."""
    if hasattr(x, "to_numpy") and hasattr(x, "columns"):
        x = x.to_numpy()
    if isinstance(x, np.ndarray):
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            raise TypeError(f"{name} must hold numbers, got a numpy array of dtype {x.dtype}; "
                            "encode categorical columns first.")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, Tensor):
        kind = type(x).__name__
        raise TypeError(f"{name} must be a tensor, an array or a DataFrame, got {kind}.")
    if x.ndim == 0:
        raise ValueError(f"{name} must have shape [N, ...], got a scalar.")
    if x.shape[0] == 0:
        raise ValueError(f"{name} has no rows; need at least one sample [N, ...] with N >= 1.")
    x = x.detach().cpu().reshape(x.shape[0], -1).double()
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values; clean or impute them first.")
    return x


def nearest_neighbors(
    query: Any, reference: Any, chunk_size: int = 1024, exclude_self: bool = False, k: int = 1
) -> tuple[Tensor, Tensor]:
    """Euclidean distance from every query row ``[N, D]`` to its ``k``-th nearest (1: the
    nearest) reference row ``[M, D]``, with ``torch.cdist`` over chunks of ``chunk_size`` query
    rows (memory: ``chunk_size * M`` distances). ``exclude_self``: ``query`` *is* ``reference``
    (same rows, same order) and row ``i`` is not its own neighbour (duplicates elsewhere still
    count, at distance 0).

    Returns:
        ``(distance, index)``: float64 tensor ``[N]`` and LongTensor ``[N]`` into ``reference``.
    """
    q, r = as_matrix(query, "query"), as_matrix(reference, "reference")
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"query has {q.shape[1]} dimensions but reference has {r.shape[1]}; "
                         "flatten both the same way.")
    available = r.shape[0] - (1 if exclude_self else 0)
    if not 1 <= k <= available:
        raise ValueError(f"k={k} needs at least {k} reference rows, got {available}.")
    if exclude_self and q.shape[0] != r.shape[0]:
        raise ValueError("exclude_self=True needs query and reference to be the same rows.")
    return _kth_nearest(q, r, chunk_size, k, torch.arange(q.shape[0]) if exclude_self else None)


def _kth_nearest(
    q: Tensor, r: Tensor, chunk_size: int, k: int = 1, skip: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """:func:`nearest_neighbors` on checked matrices; ``skip[i]`` is a row of ``r`` that query
    row ``i`` may not pick (itself)."""
    dists, index = [], []
    for start in range(0, q.shape[0], chunk_size):
        d = torch.cdist(q[start : start + chunk_size], r)
        if skip is not None:
            d[torch.arange(d.shape[0]), skip[start : start + chunk_size]] = float("inf")
        val, idx = d.topk(k, dim=1, largest=False)
        dists.append(val[:, k - 1])
        index.append(idx[:, k - 1])
    if not dists:
        return torch.empty(0, dtype=torch.float64), torch.empty(0, dtype=torch.long)
    return torch.cat(dists), torch.cat(index)


_SUMMARY = ("mean", "std", "min", "p05", "median", "p95", "max")


def summary(values: Tensor) -> dict[str, float]:
    """``mean``, ``std``, ``min``, ``p05``, ``median``, ``p95``, ``max`` of a 1-D tensor."""
    v = values.double()
    if v.numel() == 0:
        return {key: float("nan") for key in _SUMMARY}
    q = torch.quantile(v, torch.tensor([0.05, 0.5, 0.95], dtype=v.dtype))
    std = v.std() if v.numel() > 1 else 0.0
    stats = (v.mean(), std, v.min(), q[0], q[1], q[2], v.max())
    return {key: float(x) for key, x in zip(_SUMMARY, stats, strict=True)}


def memorization_report(
    synthetic: Any, train: Any, threshold: float = 0.5, chunk_size: int = 1024,
    baseline_size: int | None = 2000, seed: int = 0, atol: float = 1e-6,
) -> dict[str, Any]:
    """Are synthetic samples copies of training samples?

    For each synthetic sample, ``dcr`` is the distance to its closest training sample. The
    baseline is the distance of a training sample to its nearest *other distinct* training sample
    (computed for ``baseline_size`` random training rows against all of them). A synthetic
    sample is a near-copy when ``dcr / median(baseline) < threshold``.

    Args:
        synthetic, train: ``[N, D]`` synthetic and ``[M, D]`` training samples (``M >= 2``), on
            the same scale.
        baseline_size: training rows used as queries for the baseline (``None``: all), picked
            with ``seed``; ``chunk_size``: query rows per ``cdist`` call.
        atol: distances at or below this count as exact copies.

    Returns:
        JSON-serializable dict: ``n_synthetic``, ``n_train``, ``dim``, ``threshold``,
        ``dcr`` / ``train_nn`` / ``ratio`` summaries (see :func:`summary`),
        ``share_near_copies`` (ratio below ``threshold``), ``share_exact_copies``,
        ``share_below_train_p05`` (DCR below the 5% quantile of the baseline: a quantile
        criterion free of ``threshold``).
    """
    syn, tr = as_matrix(synthetic, "synthetic"), as_matrix(train, "train")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0:
        raise ValueError(f"threshold must be a number > 0, got {threshold!r}.")
    if baseline_size is not None and (isinstance(baseline_size, bool) or baseline_size < 1):
        raise ValueError(f"baseline_size must be an int >= 1 or None, got {baseline_size!r}.")
    dcr, _ = nearest_neighbors(syn, tr, chunk_size)
    # the baseline is the spacing of *distinct* training rows: with repeated rows (an
    # oversampled table) it would be 0 and every synthetic row would count as "not near"
    n_train = int(tr.shape[0])
    tr = torch.unique(tr, dim=0)
    if tr.shape[0] < 2:
        raise ValueError(f"train needs at least 2 distinct rows for a baseline, got {tr.shape[0]}.")
    rows = torch.arange(tr.shape[0])
    if baseline_size is not None and baseline_size < tr.shape[0]:
        g = torch.Generator().manual_seed(seed)
        rows = torch.randperm(tr.shape[0], generator=g)[:baseline_size]
    base, _ = _kth_nearest(tr[rows], tr, chunk_size, skip=rows)
    scale = float(base.median())
    ratio = dcr / scale if scale > 0 else torch.full_like(dcr, float("inf"))
    p05 = float(torch.quantile(base, 0.05))
    n = max(syn.shape[0], 1)
    return {
        "n_synthetic": int(syn.shape[0]), "n_train": n_train, "dim": int(syn.shape[1]),
        "threshold": float(threshold),
        "dcr": summary(dcr), "train_nn": summary(base), "ratio": summary(ratio),
        "share_near_copies": float((ratio < threshold).sum()) / n,
        "share_exact_copies": float((dcr <= atol).sum()) / n,
        "share_below_train_p05": float((dcr < p05).sum()) / n,
    }


# --- fidelity ---------------------------------------------------------------------------------
def mmd_rbf(x: Any, y: Any, bandwidth: float | None = None, max_samples: int = 2000) -> float:
    """Squared maximum mean discrepancy with a Gaussian kernel (unbiased estimate) of ``[N, D]``
    and ``[M, D]`` samples (``N, M >= 2``, each cut to its first ``max_samples`` rows: the cost
    is quadratic): about 0 for samples of the same distribution, may dip slightly below 0.
    ``bandwidth`` ``None`` takes the median pairwise distance of the pooled samples."""
    a, b = as_matrix(x, "x")[:max_samples], as_matrix(y, "y")[:max_samples]
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("mmd_rbf needs at least 2 samples in each set.")
    if bandwidth is None:
        pooled = torch.cat([a, b])
        d = torch.cdist(pooled, pooled)
        bandwidth = float(d[d > 0].median()) if (d > 0).any() else 1.0
    gamma = 1.0 / (2.0 * bandwidth**2)

    def mean_kernel(u: Tensor, v: Tensor, same: bool) -> Tensor:
        k = torch.exp(-gamma * torch.cdist(u, v).pow(2))
        if same:
            n = u.shape[0]
            return (k.sum() - k.diagonal().sum()) / (n * (n - 1))
        return k.mean()

    return float(mean_kernel(a, a, True) + mean_kernel(b, b, True) - 2 * mean_kernel(a, b, False))


def knn_precision_recall(real: Any, synthetic: Any, k: int = 3, chunk_size: int = 1024) -> dict:
    """Improved precision and recall (Kynkaanniemi et al., 2019, "Improved Precision and Recall
    Metric for Assessing Generative Models", https://arxiv.org/abs/1904.06991) with ``k``-NN
    balls: ``{"precision": float, "recall": float, "k": k}``, each share in ``[0, 1]``.

    Precision: share of synthetic samples inside some real sample's ball (radius: distance to
    its ``k``-th real neighbour). Recall: share of real samples inside some synthetic ball.
    """
    r, s = as_matrix(real, "real"), as_matrix(synthetic, "synthetic")

    def coverage(points: Tensor, centres: Tensor) -> float:
        radius, _ = nearest_neighbors(centres, centres, chunk_size, exclude_self=True, k=k)
        inside = 0
        for start in range(0, points.shape[0], chunk_size):
            d = torch.cdist(points[start : start + chunk_size], centres)
            inside += int((d <= radius[None, :]).any(dim=1).sum())
        return inside / max(points.shape[0], 1)

    return {"precision": coverage(s, r), "recall": coverage(r, s), "k": int(k)}


def moment_gaps(real: Any, synthetic: Any) -> dict[str, float]:
    """Mean absolute gap between per-dimension means and standard deviations, and between
    correlation matrices (off-diagonal entries; 0 where a dimension is constant)."""
    r, s = as_matrix(real, "real"), as_matrix(synthetic, "synthetic")
    if r.shape[1] != s.shape[1]:
        raise ValueError(f"real has {r.shape[1]} dimensions but synthetic has {s.shape[1]}.")
    out = {"mean_gap": float((r.mean(0) - s.mean(0)).abs().mean()),
           "std_gap": float((r.std(0) - s.std(0)).abs().mean())}
    if r.shape[1] > 1 and r.shape[0] > 2 and s.shape[0] > 2:
        cr, cs = torch.corrcoef(r.T).nan_to_num(0.0), torch.corrcoef(s.T).nan_to_num(0.0)
        off = ~torch.eye(r.shape[1], dtype=torch.bool)
        out["corr_gap"] = float((cr - cs).abs()[off].mean())
    return out


def predict(model: Any, x: Tensor, batch_size: int = 256) -> Tensor:
    """The flow's own classifier (Bayes' rule, uniform prior): the argmax of
    ``model.classify`` for ``x`` (float tensor ``[N, *event_shape]`` in model space), ``[N]``
    on CPU, computed in batches."""
    with eval_mode(model):
        return torch.cat([model.classify(x[i : i + batch_size].to(model.device)).argmax(1).cpu()
                          for i in range(0, x.shape[0], batch_size)] or [torch.empty(0).long()])


def label_agreement(model: Any, x: Tensor, y: Any, batch_size: int = 256) -> float:
    """Share of samples whose class under the flow's own classifier (:func:`predict`) is ``y``
    (``[N]`` intended classes) for a class-conditional ``model``."""
    y = torch.as_tensor(y).long().reshape(-1)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"y has {y.shape[0]} labels for {x.shape[0]} samples.")
    return int((predict(model, x, batch_size) == y).sum()) / max(x.shape[0], 1)


def fidelity_report(real: Any, synthetic: Any, k: int = 3, max_samples: int = 2000) -> dict:
    """MMD, k-NN precision/recall and moment gaps in one JSON-serializable dict (``real`` and
    ``synthetic`` cut to their first ``max_samples`` rows)."""
    r, s = as_matrix(real, "real")[:max_samples], as_matrix(synthetic, "synthetic")[:max_samples]
    return {"n_real": int(r.shape[0]), "n_synthetic": int(s.shape[0]), "mmd_rbf": mmd_rbf(r, s),
            **knn_precision_recall(r, s, k), **moment_gaps(r, s)}
