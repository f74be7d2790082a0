"""Evaluation that can fail: which rows a model never trained on, and whether its samples help
a classifier.

- :func:`write_split` records, next to a fitted model, which rows of its data were held out;
  :func:`held_out_rows` finds them again when ``flowaug evaluate`` gets the same data.
- :func:`classifier_checks` trains one small classifier (multinomial logistic regression on
  the pixel values or features) three ways and scores each on held-out real rows: on real rows,
  on synthetic rows only (the classification accuracy score of Ravuri & Vinyals 2019,
  arXiv 1905.10887), and on real plus synthetic rows (the augmentation check), with a one-line
  verdict.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SPLIT_FILE",
    "write_split",
    "held_out_rows",
    "classifier_checks",
    "verdict",
    "PRECISION_MEANS",
    "RECALL_MEANS",
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


def _labels_digest(y: Any) -> str:
    return hashlib.sha256(np.asarray(y, dtype=np.int64).tobytes()).hexdigest()


def write_split(folder: str | Path, spec: str, y: Any, held_out: Any, how: str) -> Path:
    """Write ``folder/split.json``: the row indices of ``spec``'s labelled rows ``y`` that the
    model in ``folder`` never trained on (``how`` says how they were chosen)."""
    path = Path(folder) / SPLIT_FILE
    meta = {
        "data": str(spec),
        "n_rows": int(len(y)),
        "labels_sha256": _labels_digest(y),
        "held_out": [int(i) for i in np.asarray(held_out)],
        "how": how,
    }
    path.write_text(json.dumps(meta) + "\n")
    return path


def held_out_rows(folder: str | Path, y: Any) -> np.ndarray | None:
    """The held-out row indices recorded for the model in ``folder``, when ``y`` (the labels
    of the data being evaluated, in order) is the data it was fitted on; else None."""
    path = Path(folder) / SPLIT_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if meta.get("n_rows") != len(y) or meta.get("labels_sha256") != _labels_digest(y):
        return None
    index = np.asarray(meta.get("held_out", []), dtype=np.int64)
    return index if len(index) else None


def _accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
              test_y: np.ndarray, seed: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(train_y)) < 2:
        return float(np.mean(test_y == train_y[0]))
    classifier = make_pipeline(
        StandardScaler(), LogisticRegression(C=0.1, max_iter=300, random_state=seed)
    )
    import warnings

    with warnings.catch_warnings():  # a few hundred iterations are enough for a verdict
        warnings.simplefilter("ignore")
        classifier.fit(train_x, train_y)
    return float(np.mean(classifier.predict(test_x) == test_y))


def classifier_checks(
    real_x: Any, real_y: Any, test_x: Any, test_y: Any, syn_x: Any, syn_y: Any, seed: int = 0
) -> dict[str, Any]:
    """Accuracy on the held-out real rows ``(test_x, test_y)`` of one logistic regression
    trained on the real rows, on the synthetic rows only, and on both.

    Inputs are arrays or tensors ``[N, ...]`` (flattened to ``[N, D]``; images as values in
    ``[0, 1]``) and integer labels ``[N]``. Returns a JSON-serializable dict with the three
    accuracies, the augmentation gain in points, its standard error and the verdict."""
    def flat(x: Any) -> np.ndarray:
        arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        return arr.reshape(len(arr), -1).astype(np.float64)

    def labels(y: Any) -> np.ndarray:
        return (y.detach().cpu().numpy() if hasattr(y, "detach") else np.asarray(y)).astype(int)

    rx, ry, tx, ty = flat(real_x), labels(real_y), flat(test_x), labels(test_y)
    sx, sy = flat(syn_x), labels(syn_y)
    real = _accuracy(rx, ry, tx, ty, seed)
    synthetic = _accuracy(sx, sy, tx, ty, seed)
    both = _accuracy(np.concatenate([rx, sx]), np.concatenate([ry, sy]), tx, ty, seed)
    gain = 100 * (both - real)
    # standard error of a difference of two accuracies on the same n test rows (upper bound)
    se = 100 * math.sqrt(2 * max(real * (1 - real), 1 / len(ty)) / len(ty))
    return {
        "classifier": "logistic regression on standardized pixels / features",
        "n_real_train": int(len(ry)),
        "n_synthetic_train": int(len(sy)),
        "n_test": int(len(ty)),
        "real_accuracy": real,
        "synthetic_only_accuracy": synthetic,
        "real_plus_synthetic_accuracy": both,
        "augmentation_gain_points": gain,
        "gain_standard_error_points": se,
        "verdict": verdict(gain, se),
    }


def verdict(gain_points: float, standard_error: float) -> str:
    """One line: help / do not help / hurt, by how many accuracy points."""
    if abs(gain_points) <= max(standard_error, 0.5):
        return (
            f"on this data, synthetic samples do not help ({gain_points:+.1f} points, within "
            f"the noise of +-{standard_error:.1f})"
        )
    if gain_points > 0:
        return f"on this data, synthetic samples help by {gain_points:.1f} points"
    return f"on this data, synthetic samples hurt by {-gain_points:.1f} points"
