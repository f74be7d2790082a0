"""FlowOversampler against SMOTE in an imbalanced-learn pipeline, on an imbalanced table.

Run:  python recipes/imbalanced_tabular.py [--dataset breast_cancer|wine] [--minority-fraction 0.1]
      python recipes/imbalanced_tabular.py --quick   # a few seconds: one seed, short training
SMOTE needs imbalanced-learn (pip install imbalanced-learn, or the `bench` extra); without it the
SMOTE arm is skipped and FlowOversampler runs outside an imblearn pipeline.

A scikit-learn table is split 70/30 (stratified, random_state=0). The training part is made
imbalanced: every row of the largest class is kept, and only ``--minority-fraction`` of each
other class (a fresh draw per seed); the test part keeps its natural balance. Each arm is one
pipeline, ``StandardScaler -> sampler -> LogisticRegression``, fitted on the imbalanced rows:

- ``none``: no resampling;
- ``SMOTE``: imbalanced-learn's interpolation between minority neighbours;
- ``FlowOversampler``: synthetic minority rows drawn from a class-conditional flow fitted on the
  training rows (every class shapes the shared flow, each class is sampled exactly).

Samplers act only while the pipeline is fitted, never at prediction time. The script prints the
balanced accuracy on the test part (mean and spread over seeds).
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline as make_sklearn_pipeline
from sklearn.preprocessing import StandardScaler

from flowaug import FlowOversampler

try:
    from imblearn.over_sampling import SMOTE
    from imblearn.pipeline import make_pipeline
except ImportError:  # optional: the flow arm does not need it
    SMOTE = make_pipeline = None

DATASETS = {"breast_cancer": load_breast_cancer, "wine": load_wine}
MISSING_IMBLEARN = (
    "imbalanced-learn is not installed, so the SMOTE arm is skipped and FlowOversampler runs "
    "outside an imblearn pipeline; install it with `pip install imbalanced-learn` (or "
    "`pip install flowaug[bench]`) to compare."
)


def imbalanced_split(
    X: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """70/30 stratified split; the training part keeps all of its largest class and
    ``fraction`` (at least 2 rows) of every other class."""
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=0
    )
    classes, counts = np.unique(y_train, return_counts=True)
    majority = classes[np.argmax(counts)]
    rng = np.random.default_rng(seed)
    keep = []
    for c in classes:
        rows = np.flatnonzero(y_train == c)
        if c != majority:
            rows = rng.choice(rows, max(2, round(fraction * len(rows))), replace=False)
        keep.append(rows)
    keep = np.sort(np.concatenate(keep))
    return X_train[keep], X_test, y_train[keep], y_test


def build_pipeline(sampler, seed: int):
    """``StandardScaler -> sampler -> LogisticRegression`` (an imblearn pipeline when a sampler
    is given, so that it resamples during ``fit`` only)."""
    classifier = LogisticRegression(max_iter=2000, random_state=seed)
    if sampler is None:
        return make_sklearn_pipeline(StandardScaler(), classifier)
    return make_pipeline(StandardScaler(), sampler, classifier)


class _ResampleThenFit:
    """The pipeline's behaviour without imbalanced-learn: scale, resample, fit a classifier."""

    def __init__(self, sampler, seed: int):
        self.sampler, self.seed = sampler, seed

    def fit(self, X, y):
        self.scaler = StandardScaler().fit(X)
        X_res, y_res = self.sampler.fit_resample(self.scaler.transform(X), y)
        self.classifier = LogisticRegression(max_iter=2000, random_state=self.seed)
        self.classifier.fit(X_res, y_res)
        return self

    def predict(self, X):
        return self.classifier.predict(self.scaler.transform(X))


def make_arms(seed: int, flow_steps: int, smote_neighbors: int) -> dict:
    flow = FlowOversampler(random_state=seed, max_steps=flow_steps)
    if make_pipeline is None:
        return {"none": build_pipeline(None, seed), "FlowOversampler": _ResampleThenFit(flow, seed)}
    return {
        "none": build_pipeline(None, seed),
        "SMOTE": build_pipeline(SMOTE(k_neighbors=smote_neighbors, random_state=seed), seed),
        "FlowOversampler": build_pipeline(flow, seed),
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="breast_cancer")
    parser.add_argument(
        "--minority-fraction", type=float, default=0.1, help="share kept of non-majority classes"
    )
    parser.add_argument("--seeds", type=int, default=3, help="number of imbalanced draws")
    parser.add_argument("--flow-steps", type=int, default=400, help="FlowOversampler max_steps")
    parser.add_argument("--quick", action="store_true", help="smoke run: one seed, short training")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.flow_steps = 1, 20
    if make_pipeline is None:
        print(MISSING_IMBLEARN)

    X, y = DATASETS[args.dataset](return_X_y=True)
    scores: dict[str, list[float]] = {}
    for seed in range(args.seeds):
        X_train, X_test, y_train, y_test = imbalanced_split(X, y, args.minority_fraction, seed)
        classes, counts = np.unique(y_train, return_counts=True)
        if seed == 0:
            per_class = dict(zip(classes.tolist(), counts.tolist(), strict=True))
            print(f"{args.dataset}: training rows per class {per_class}, {len(y_test)} test rows")
        neighbors = int(min(5, counts.min() - 1))
        for name, pipeline in make_arms(seed, args.flow_steps, neighbors).items():
            pipeline.fit(X_train, y_train)
            score = balanced_accuracy_score(y_test, pipeline.predict(X_test))
            scores.setdefault(name, []).append(float(score))

    print(f"\nbalanced accuracy on the test part, {args.seeds} seed(s), LogisticRegression")
    print(f"{'sampler':>16s}  {'mean':>6s}  {'min':>6s}  {'max':>6s}")
    for name, values in scores.items():
        print(f"{name:>16s}  {np.mean(values):6.3f}  {np.min(values):6.3f}  {np.max(values):6.3f}")
    return {name: float(np.mean(values)) for name, values in scores.items()}


if __name__ == "__main__":
    main()
