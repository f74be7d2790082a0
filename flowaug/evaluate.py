"""How good a fitted model is on real data: :func:`evaluate` gives the report ``flowaug evaluate``
prints: bits/dim (:func:`bits_per_dim`, the one batched loop), the flow's own classifier,
memorization and fidelity (:mod:`flowaug.metrics`), and :func:`classifier_checks`: one logistic
regression trained on real rows, on synthetic rows only (the classification accuracy score of
Ravuri & Vinyals 2019, arXiv 1905.10887) and on both, scored on held-out real rows, with a
verdict. :func:`write_split` records next to a fitted model which rows of its data were held
out; :func:`held_out_rows` finds them again.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowaug.metrics import fidelity_report, label_agreement, memorization_report, predict
from flowaug.pixels import image_to_model, model_to_image
from flowaug.sampling import eval_mode, sample_per_class
from flowaug.training import prepare_batch, split_index

__all__ = [
    "SPLIT_FILE", "PRECISION_MEANS", "RECALL_MEANS", "bits_per_dim", "class_names",
    "classifier_checks", "evaluate", "held_out_rows", "mean_bits_per_dim", "scope_text",
    "verdict", "write_split",
]

#: The file, next to a model, naming the rows of its data that training never saw.
SPLIT_FILE = "split.json"

PRECISION_MEANS = (
    "precision: the share of synthetic samples that fall within the real data's k-NN balls "
    "(low: samples unlike any real row)"
)
RECALL_MEANS = (
    "recall: the share of real rows that fall within the synthetic samples' k-NN balls "
    "(low: parts of the data the flow does not produce)"
)


def class_names(model: Any) -> list[str]:
    """The model's class names, or ``"0", "1", ...`` when it has none."""
    names = getattr(model, "class_names", None)
    return list(names) if names else [str(c) for c in range(max(model.num_classes, 1))]


def bits_per_dim(
    model: Any, x: Tensor, y: Tensor | None, generator: torch.Generator, batch_size: int = 512
) -> Tensor:
    """Bits/dim ``[N]`` (on the model's device) of raw rows ``x`` with labels ``y [N]``, in
    batches: integer rows are dequantized with noise from ``generator`` (on its device) and
    scored in discrete terms, float rows (model space) in continuous terms."""
    parts = []
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(generator.device)
            x01 = prepare_batch(model, xb, generator).to(model.device)
            yb = None if y is None else y[i : i + batch_size].to(model.device)
            levels = None if xb.is_floating_point() else model.levels
            parts.append(model.bits_per_dim_from_log_prob(model.log_prob(x01, yb), levels))
    return torch.cat(parts)


def mean_bits_per_dim(
    model: Any, x: Tensor, y: Tensor | None, draws: int = 4, seed: int = 0, batch: int = 512
) -> float:
    """Test bits/dim averaged over ``draws`` dequantization noise draws (CPU generators seeded
    ``seed``, ``seed + 1``, ...): what ``flowaug quickstart`` prints."""
    total = 0.0
    for k in range(draws):
        generator = torch.Generator().manual_seed(seed + k)
        total += float(bits_per_dim(model, x, y, generator, batch).mean())
    return total / draws


def _model_views(model: Any, data: Any) -> tuple[Tensor, Tensor, Tensor, int | None]:
    """``(raw, model_space, values01, requantized_from)`` of the data for ``model``: ``raw`` for
    :func:`bits_per_dim` (integer codes on the model's levels for image models with levels, so
    bits/dim are discrete), ``model_space`` the centre of each code's bin (what the flow
    classifies), ``values01`` the image values ``k / (levels - 1)`` distances are measured on.
    Integer images of other levels, and float images, are requantized to the model's levels
    (``requantized_from``: their levels, 0 for floats)."""
    levels, x = model.levels, data.x
    if data.is_image and levels is not None:
        requantized_from = None
        if not data.is_discrete:
            requantized_from, x = 0, torch.round(x.double() * (levels - 1))
        elif data.levels != levels:
            requantized_from = data.levels
            x = torch.round(x.double() * ((levels - 1) / (data.levels - 1)))
        codes = x.long()
        values01 = codes.float() / (levels - 1)
        return codes, image_to_model(values01, levels), values01, requantized_from
    if data.is_discrete:  # integer images, model without levels: continuous [0, 1]
        x = x.float() / (data.levels - 1)
    x = x.float()
    return x, x, x, None


def _per_class(index: Tensor, y: Tensor, k: int, seed: int) -> Tensor:
    """``k`` entries of ``index`` per class of ``y[index]`` (all of a class with fewer), seeded."""
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for c in torch.unique(y[index]):
        rows = index[y[index] == c]
        parts.append(rows[torch.randperm(len(rows), generator=gen)[:k]])
    return torch.sort(torch.cat(parts)).values


def scope_text(held_out: Any, n_rows: int) -> str:
    """Which rows :func:`evaluate` scores bits/dim and the flow's classifier on, in words."""
    if held_out is None:
        return f"all {n_rows} rows"
    return f"the {len(held_out)} rows the fit held out (MODEL/{SPLIT_FILE})"


def _likelihood_scores(model: Any, raw: Tensor, x_model: Tensor, y: Tensor, seed: int,
                       batch_size: int) -> tuple[float, float, dict[str, float]]:
    """Bits/dim (one fixed-seed noise draw), the flow classifier's accuracy and its accuracy
    per class on the rows."""
    generator = torch.Generator(device=model.device).manual_seed(seed)
    bpd = bits_per_dim(model, raw, y, generator, batch_size).cpu().double().mean()
    hits = predict(model, x_model, batch_size) == y
    names = class_names(model)
    per_class = {
        names[c]: float(hits[y == c].double().mean())
        for c in range(model.num_classes) if bool((y == c).any())
    }
    return float(bpd), float(hits.double().mean()), per_class


def _rows(data: Any, held_out: Any, seed: int) -> tuple[Any, Tensor, Tensor]:
    """``(scored, train, test)``: the rows bits/dim and the flow's classifier are scored on, and
    the classifier checks' training and test rows (the held-out rows, else a seeded half)."""
    if held_out is None:
        train_idx, test_idx = (torch.as_tensor(i) for i in split_index(data, 0.5, seed))
        return slice(None), train_idx, test_idx
    test_idx = torch.as_tensor(held_out)
    return test_idx, torch.as_tensor(np.setdiff1d(np.arange(len(data)), held_out)), test_idx


def _samples(model: Any, discrete: bool, n_per_class: int, temperature: float, seed: int,
             batch_size: int) -> tuple[Tensor, Tensor, float]:
    """``n_per_class`` samples of every class as values in ``[0, 1]`` (on the model's levels
    when ``discrete``), their labels, and the share the flow's own classifier agrees with."""
    x_syn, y_syn = sample_per_class(model, n_per_class, temperature, seed, batch_size)
    syn01 = model_to_image(x_syn, model.levels) if discrete else x_syn
    syn_model = image_to_model(syn01, model.levels) if discrete else x_syn
    return syn01, y_syn, label_agreement(model, syn_model, y_syn, batch_size)


def evaluate(
    model: Any, data: Any, *, held_out: Any = None, n_per_class: int = 100,
    temperature: float = 0.8, seed: int = 0, batch_size: int = 256,
    real_per_class: int | None = None, progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score ``model`` on the labelled real rows of ``data`` (a ``FlowData`` of its shape).

    Args:
        held_out: indices of the rows the model never trained on (:func:`held_out_rows`):
            bits/dim and the flow's classifier are scored on them and the classifier checks
            train on the other rows; ``None``: scored on every row, the checks on a seeded half.
        n_per_class: synthetic samples per class for memorization, fidelity and the checks.
        real_per_class: train the checks' real-row classifier on this many rows per class.
        progress: called with a line before each of the four stages.

    Returns:
        a JSON-serializable report (bits/dim, ``classifier_accuracy``, ``memorization``,
        ``fidelity``, ``classifier_checks`` with its verdict, ...).
    """
    progress = progress or (lambda line: None)
    raw, x_model, values01, requantized_from = _model_views(model, data)
    discrete = not raw.is_floating_point()
    scored, train_idx, test_idx = _rows(data, held_out, seed)
    progress(f"bits/dim and the flow's classifier on {scope_text(held_out, len(data))}")
    bpd, accuracy, per_class = _likelihood_scores(
        model, raw[scored], x_model[scored], data.y[scored], seed, batch_size
    )
    progress(f"{model.num_classes} x {n_per_class} synthetic samples")
    syn01, y_syn, agreement = _samples(model, discrete, n_per_class, temperature, seed, batch_size)
    progress("memorization and fidelity")
    memorization = memorization_report(syn01, values01, seed=seed)
    fidelity = fidelity_report(values01, syn01) if len(syn01) >= 2 and len(values01) >= 2 else None
    progress("a classifier on real, synthetic and real + synthetic rows, scored on held-out rows")
    if real_per_class is not None:
        train_idx = _per_class(train_idx, data.y, real_per_class, seed)
    checks = classifier_checks(values01[train_idx], data.y[train_idx], values01[test_idx],
                               data.y[test_idx], syn01, y_syn, seed=seed)
    checks["real_per_class"] = real_per_class
    return {
        "n_rows": len(data), "num_classes": int(model.num_classes),
        "class_names": class_names(model), "bits_per_dim": bpd,
        "bits_per_dim_kind": "discrete" if discrete else "continuous",
        "levels": model.levels if discrete else None, "requantized_from_levels": requantized_from,
        "classifier_accuracy": accuracy, "per_class_accuracy": per_class,
        "synthetic": {"n_per_class": n_per_class, "temperature": temperature, "seed": seed,
                      "label_agreement": agreement},
        "memorization": memorization, "fidelity": fidelity,
        "evaluated_on": "all rows (no held-out record)" if held_out is None else "held-out rows",
        "n_evaluated_rows": len(data.y[scored]), "classifier_checks": checks,
    }


# --- the held-out record -----------------------------------------------------------------------


def _labels_digest(y: Any) -> str:
    return hashlib.sha256(np.asarray(y, dtype=np.int64).tobytes()).hexdigest()


def write_split(folder: str | Path, spec: str, y: Any, held_out: Any, how: str) -> Path:
    """Write ``folder/split.json``: the row indices of ``spec``'s labelled rows ``y`` that the
    model in ``folder`` never trained on (``how`` says how they were chosen)."""
    path = Path(folder) / SPLIT_FILE
    meta = {"data": str(spec), "n_rows": int(len(y)), "labels_sha256": _labels_digest(y),
            "held_out": [int(i) for i in np.asarray(held_out)], "how": how}
    path.write_text(json.dumps(meta) + "\n")
    return path


def held_out_rows(folder: str | Path, y: Any) -> np.ndarray | None:
    """The held-out row indices recorded for the model in ``folder``, when ``y`` (the labels
    of the data being evaluated, in order) is the data it was fitted on; else None."""
    try:
        meta = json.loads((Path(folder) / SPLIT_FILE).read_text())
    except (OSError, ValueError):
        return None
    if meta.get("n_rows") != len(y) or meta.get("labels_sha256") != _labels_digest(y):
        return None
    index = np.asarray(meta.get("held_out", []), dtype=np.int64)
    return index if len(index) else None


# --- does a classifier gain from the samples ---------------------------------------------------


def _accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
              test_y: np.ndarray, seed: int) -> float:
    import warnings

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(train_y)) < 2:
        return float(np.mean(test_y == train_y[0]))
    classifier = make_pipeline(StandardScaler(),
                               LogisticRegression(C=0.1, max_iter=300, random_state=seed))
    with warnings.catch_warnings():  # a few hundred iterations are enough for a verdict
        warnings.simplefilter("ignore")
        classifier.fit(train_x, train_y)
    return float(np.mean(classifier.predict(test_x) == test_y))


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def classifier_checks(
    real_x: Any, real_y: Any, test_x: Any, test_y: Any, syn_x: Any, syn_y: Any, seed: int = 0
) -> dict[str, Any]:
    """Accuracy on the held-out real rows ``(test_x, test_y)`` of one logistic regression
    trained on the real rows, on the synthetic rows only, and on both.

    Inputs are arrays or tensors ``[N, ...]`` (flattened to ``[N, D]``; images as values in
    ``[0, 1]``) and integer labels ``[N]``. Returns a JSON-serializable dict with the three
    accuracies, the augmentation gain in points, its standard error and the verdict."""
    rx, tx, sx = (_numpy(x).reshape(len(x), -1).astype(np.float64) for x in (real_x, test_x, syn_x))
    ry, ty, sy = (_numpy(y).astype(int) for y in (real_y, test_y, syn_y))
    real = _accuracy(rx, ry, tx, ty, seed)
    synthetic = _accuracy(sx, sy, tx, ty, seed)
    both = _accuracy(np.concatenate([rx, sx]), np.concatenate([ry, sy]), tx, ty, seed)
    gain = 100 * (both - real)
    # standard error of a difference of two accuracies on the same n test rows (upper bound)
    se = 100 * math.sqrt(2 * max(real * (1 - real), 1 / len(ty)) / len(ty))
    return {
        "classifier": "logistic regression on standardized pixels / features",
        "n_real_train": int(len(ry)), "n_synthetic_train": int(len(sy)), "n_test": int(len(ty)),
        "real_accuracy": real, "synthetic_only_accuracy": synthetic,
        "real_plus_synthetic_accuracy": both, "augmentation_gain_points": gain,
        "gain_standard_error_points": se, "verdict": verdict(gain, se),
    }


def verdict(gain_points: float, standard_error: float) -> str:
    """One line: help / do not help / hurt, by how many accuracy points."""
    if abs(gain_points) <= max(standard_error, 0.5):
        return (f"on this data, synthetic samples do not help ({gain_points:+.1f} points, within "
                f"the noise of +-{standard_error:.1f})")
    if gain_points > 0:
        return f"on this data, synthetic samples help by {gain_points:.1f} points"
    return f"on this data, synthetic samples hurt by {-gain_points:.1f} points"
