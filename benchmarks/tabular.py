"""Tabular augmentation benchmark: flowaug (labelled-only and semi-supervised) vs SMOTE, per-class
GMM, Gaussian jitter, real only.

How to run (from the repository root; needs the `bench` extra for SMOTE: imbalanced-learn):

    python benchmarks/tabular.py            # full grid, writes benchmarks/results/tabular.{json,md}
    python benchmarks/tabular.py --quick    # smoke run: 1 seed, k=5, fewer flow steps

Protocol (scikit-learn's breast_cancer and wine): a stratified 70/30 split (random_state=0);
the test part is never used for fitting. From the training part, k rows per class (k in
{5, 10, 25}, 5 seeds) or the *imbalanced* variant (all rows of the largest class, 10% of each
other class, 5 seeds). Every augmentation arm adds synthetic rows fitted on those rows only:
balanced settings bring every class to ``k + synth_per_k * k`` rows, the imbalanced one brings
every class to the majority count. The ``flowaug semi-supervised`` arm is the same
FlowOversampler fitted on those labelled rows *plus* the unused rows of the training part passed
with label -1 (their labels are never read); it adds the same synthetic counts. It runs only in
the k-per-class settings: the imbalanced variant has no unused rows by its definition (every
majority row is used; the minority rows left out would be a pool of the minority classes only,
a label leak), so that arm is skipped there. Classifiers, each scored on its own (settings
chosen once, before any run, never tuned on the test part): StandardScaler +
LogisticRegression(max_iter=5000); StandardScaler + MLPClassifier(hidden_layer_sizes=(64,),
solver="lbfgs", alpha=1e-2, max_iter=2000, random_state=0) (lbfgs: scikit-learn's advice for
small data); HistGradientBoosting(random_state=seed). Metric: balanced accuracy on the test
part. Fidelity (k=25 and the
imbalanced variant): per-column Wasserstein-1 (columns standardized by the training rows) and
Kolmogorov-Smirnov distances, and the mean absolute difference of correlation matrices, between
each class's synthetic rows and the same class in the test part ("real" = the training rows
themselves, the floor that the data allows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import ks_2samp, wasserstein_distance
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowaug.integrations.oversample import FlowOversampler  # noqa: E402

DATASETS = {"breast_cancer": load_breast_cancer, "wine": load_wine}
SEMI = "flowaug semi-supervised"
ARMS = ("real", "smote", "gmm", "jitter", "flowaug", SEMI)
FIDELITY_ARMS = ("real", "flowaug", SEMI, "gmm", "smote")
CLASSIFIERS = ("logreg", "mlp", "hgb")
#: the strong small-data classifiers: the only ones a headline may rest on
HEADLINE_CLASSIFIERS = ("logreg", "mlp")
#: per flowaug fit: which model validation kept ("trained" or "init"), see FlowOversampler
FLOW_SELECTED: list[str] = []


# --- augmentation arms: (X, y, {class: rows to add}, seed) -> (X_new, y_new) ----------------------
def _empty(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return X[:0], y[:0]


def arm_smote(X, y, add, seed):
    from imblearn.over_sampling import SMOTE

    if not any(add.values()):
        return _empty(X, y)
    counts = {c: int((y == c).sum()) for c in add}
    k = max(1, min(5, min(counts[c] for c in add if add[c] > 0) - 1))
    target = {c: counts[c] + n for c, n in add.items()}
    Xr, yr = SMOTE(sampling_strategy=target, k_neighbors=k, random_state=seed).fit_resample(X, y)
    return Xr[len(X) :], yr[len(X) :]


def arm_gmm(X, y, add, seed):
    scaler = StandardScaler().fit(X)
    Xs = scaler.transform(X)
    parts, labels = [], []
    for c, n in add.items():
        if n <= 0:
            continue
        rows = Xs[y == c]
        comps = 1 if len(rows) < 20 else 2
        gmm = GaussianMixture(comps, covariance_type="full", reg_covar=1e-2, random_state=seed)
        parts.append(gmm.fit(rows).sample(n)[0])
        labels.append(np.full(n, c))
    if not parts:
        return _empty(X, y)
    return scaler.inverse_transform(np.concatenate(parts)), np.concatenate(labels)


def arm_jitter(X, y, add, seed, scale=0.1):
    rng = np.random.default_rng(seed)
    std = X.std(0)
    parts, labels = [], []
    for c, n in add.items():
        if n <= 0:
            continue
        rows = X[y == c]
        pick = rows[rng.integers(0, len(rows), n)]
        parts.append(pick + scale * std * rng.standard_normal(pick.shape))
        labels.append(np.full(n, c))
    if not parts:
        return _empty(X, y)
    return np.concatenate(parts), np.concatenate(labels)


def arm_flowaug(X, y, add, seed, flow_params=None, X_unlabelled=None):
    """FlowOversampler on ``(X, y)``; with ``X_unlabelled``, those rows join the fit with label
    -1 (``unlabelled_label``): they shape the encoders and the flow, are not returned, and do
    not count in the target counts, so both variants add the same synthetic rows."""
    if not any(add.values()):
        return _empty(X, y)
    counts = {c: int((y == c).sum()) for c in add}
    target = {c: counts[c] + n for c, n in add.items()}
    sampler = FlowOversampler(sampling_strategy=target, random_state=seed, **(flow_params or {}))
    X_fit, y_fit = X, y
    if X_unlabelled is not None and len(X_unlabelled):
        X_fit = np.concatenate([X, X_unlabelled])
        y_fit = np.concatenate([y, np.full(len(X_unlabelled), -1, dtype=y.dtype)])
    Xr, yr = sampler.fit_resample(X_fit, y_fit)
    assert len(Xr) == len(X) + sum(add.values()) and np.array_equal(Xr[: len(X)], X)
    if X_unlabelled is not None:
        assert sampler.n_unlabelled_ == len(X_unlabelled)
    FLOW_SELECTED.append(sampler.selected_)
    return Xr[len(X) :], yr[len(X) :]


# --- evaluation ---------------------------------------------------------------------------------
def classifiers(seed: int) -> dict[str, Any]:
    # settings fixed before the first run (not tuned on the test part); see the module docstring
    mlp = MLPClassifier(
        hidden_layer_sizes=(64,), solver="lbfgs", alpha=1e-2, max_iter=2000, random_state=0
    )
    return {
        "logreg": make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
        "mlp": make_pipeline(StandardScaler(), mlp),
        "hgb": HistGradientBoostingClassifier(random_state=seed),
    }


def utility(X, y, X_test, y_test, seed) -> dict[str, float]:
    out = {}
    for name, clf in classifiers(seed).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(X, y)
        out[name] = float(balanced_accuracy_score(y_test, clf.predict(X_test)))
    return out


def fidelity(X_syn, y_syn, X_test, y_test, X_ref) -> dict[str, float]:
    """Class-wise distances between synthetic and held-out real rows (columns standardized)."""
    mu, sd = X_ref.mean(0), X_ref.std(0) + 1e-12
    w1, ks, corr = [], [], []
    for c in np.unique(y_test):
        s, t = (X_syn[y_syn == c] - mu) / sd, (X_test[y_test == c] - mu) / sd
        if len(s) < 3:
            continue
        w1.append(np.mean([wasserstein_distance(s[:, j], t[:, j]) for j in range(s.shape[1])]))
        ks.append(np.mean([ks_2samp(s[:, j], t[:, j]).statistic for j in range(s.shape[1])]))
        with np.errstate(invalid="ignore", divide="ignore"):
            cs, ct = np.corrcoef(s, rowvar=False), np.corrcoef(t, rowvar=False)
        off = ~np.eye(s.shape[1], dtype=bool)
        corr.append(float(np.nanmean(np.abs(cs - ct)[off])))
    return {
        "wasserstein": float(np.mean(w1)),
        "ks": float(np.mean(ks)),
        "corr": float(np.mean(corr)),
    }


def subsample(y_train, setting, seed):
    """Indices of the training rows for a setting: ``("k", 5)`` or ``("imbalanced", None)``."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y_train, return_counts=True)
    keep = []
    for c, n in zip(classes, counts, strict=True):
        idx = np.flatnonzero(y_train == c)
        if setting[0] == "k":
            take = setting[1]
        else:
            take = n if c == classes[counts.argmax()] else max(2, round(0.1 * n))
        keep.append(rng.choice(idx, size=take, replace=False))
    return np.sort(np.concatenate(keep))


def run(args) -> dict[str, Any]:
    torch.set_num_threads(1)
    flow_params = json.loads(args.flow_params) if args.flow_params else {}
    arms = {
        "smote": arm_smote,
        "gmm": arm_gmm,
        "jitter": arm_jitter,
        "flowaug": lambda X, y, add, seed: arm_flowaug(X, y, add, seed, flow_params),
        SEMI: lambda X, y, add, seed, pool: arm_flowaug(X, y, add, seed, flow_params, pool),
    }
    settings = [("k", k) for k in args.ks] + ([("imbalanced", None)] if args.imbalanced else [])
    rows, fid_rows, timing = [], [], {a: 0.0 for a in ARMS}
    selected: dict[str, list[str]] = {}
    for name in args.datasets:
        X_all, y_all = DATASETS[name](return_X_y=True)
        X_tr, X_te, y_tr, y_te = train_test_split(
            X_all, y_all, test_size=0.3, stratify=y_all, random_state=0
        )
        for setting in settings:
            label = f"k={setting[1]}" if setting[0] == "k" else "imbalanced"
            for seed in range(args.seeds):
                idx = subsample(y_tr, setting, seed)
                X, y = X_tr[idx], y_tr[idx]
                # the unused rows of the train part: features only, their labels never read
                pool = np.delete(X_tr, idx, axis=0)
                counts = {int(c): int((y == c).sum()) for c in np.unique(y)}
                if setting[0] == "k":
                    add = {c: args.synth_per_k * setting[1] for c in counts}
                else:
                    add = {c: max(counts.values()) - n for c, n in counts.items()}
                synth = {"real": _empty(X, y)}
                for arm, fn in arms.items():
                    if arm not in args.arms or (arm == SEMI and setting[0] != "k"):
                        continue  # no unused rows in the imbalanced variant (see docstring)
                    t = time.perf_counter()
                    synth[arm] = fn(X, y, add, seed, pool) if arm == SEMI else fn(X, y, add, seed)
                    timing[arm] += time.perf_counter() - t
                    if arm in ("flowaug", SEMI):
                        key = f"{arm}, {name} {label}"
                        selected.setdefault(key, []).append(FLOW_SELECTED[-1])
                for arm, (Xs, ys) in synth.items():
                    t = time.perf_counter()
                    score = utility(
                        np.concatenate([X, Xs]), np.concatenate([y, ys]), X_te, y_te, seed
                    )
                    timing[arm] += time.perf_counter() - t
                    rows.append(
                        {"dataset": name, "setting": label, "seed": seed, "arm": arm, **score}
                    )
                if setting == ("k", max(args.ks)) or setting[0] == "imbalanced":
                    for arm in FIDELITY_ARMS:
                        if arm not in synth:
                            continue
                        Xs, ys = (X, y) if arm == "real" else synth[arm]
                        fid_rows.append(
                            {
                                "dataset": name,
                                "setting": label,
                                "seed": seed,
                                "arm": arm,
                                **fidelity(Xs, ys, X_te, y_te, X),
                            }
                        )
                print(f"{name} {label} seed={seed} done", flush=True)
    return {
        "rows": rows,
        "fidelity": fid_rows,
        "timing_s": timing,
        "flow_params": flow_params,
        "flow_selected": selected,
    }


def _setting_key(setting: str) -> tuple[int, int]:
    return (0, int(setting[2:])) if setting.startswith("k=") else (1, 0)


def summarize(result: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (dataset, setting, arm): mean and standard deviation over seeds, per classifier."""
    df = pd.DataFrame(result["rows"])
    clfs = [c for c in CLASSIFIERS if c in df.columns]
    grouped = df.groupby(["dataset", "setting", "arm"])[clfs]
    table = grouped.mean().join(grouped.std(ddof=0).add_suffix("_sd"))
    fid = pd.DataFrame(result["fidelity"])
    fid_table = (
        fid.groupby(["dataset", "setting", "arm"])[["wasserstein", "ks", "corr"]].mean()
        if len(fid)
        else fid
    )
    return table, fid_table


def paired(result: dict[str, Any], arm: str, baseline: str) -> pd.DataFrame:
    """Per (dataset, setting, classifier): ``arm - baseline`` paired over seeds (mean, sd, wins,
    seeds). Empty where either arm did not run."""
    df = pd.DataFrame(result["rows"])
    clfs = [c for c in CLASSIFIERS if c in df.columns]
    out = []
    for (dataset, setting), block in df.groupby(["dataset", "setting"]):
        a = block[block["arm"] == arm].set_index("seed")
        b = block[block["arm"] == baseline].set_index("seed")
        seeds = a.index.intersection(b.index)
        if not len(seeds):
            continue
        for clf in clfs:
            d = a.loc[seeds, clf] - b.loc[seeds, clf]
            out.append(
                {
                    "dataset": dataset,
                    "setting": setting,
                    "classifier": clf,
                    "mean": float(d.mean()),
                    "sd": float(d.std(ddof=0)),
                    "wins": int((d > 0).sum()),
                    "ties": int((d == 0).sum()),
                    "seeds": len(seeds),
                }
            )
    return pd.DataFrame(out)


CLF_NAMES = {
    "logreg": "StandardScaler + LogisticRegression",
    "mlp": "StandardScaler + MLPClassifier (64 hidden, lbfgs, alpha=1e-2)",
    "hgb": "HistGradientBoosting (default min_samples_leaf=20)",
}


def _points(x: float) -> str:
    return f"{100 * x:+.1f}"


def verdicts(result: dict[str, Any]) -> pd.DataFrame:
    """Per (dataset, setting, classifier): semi-supervised flowaug minus real and minus SMOTE,
    and whether it beats both (both mean paired differences > 0)."""
    vs_real, vs_smote = paired(result, SEMI, "real"), paired(result, SEMI, "smote")
    if not len(vs_real) or not len(vs_smote):
        return pd.DataFrame()
    keys = ["dataset", "setting", "classifier"]
    v = vs_real.merge(vs_smote, on=keys, suffixes=("_real", "_smote"))
    v["beats_both"] = (v["mean_real"] > 0) & (v["mean_smote"] > 0)
    return v


def markdown(result: dict[str, Any], command: str, elapsed: float) -> str:
    table, fid_table = summarize(result)
    present = set(table.index.get_level_values("arm"))
    arms = [a for a in ARMS if a in present]
    clfs = [c for c in CLASSIFIERS if c in table.columns]
    ks = ", ".join(str(k) for k in result.get("args", {}).get("ks", []))
    blocks = sorted({(d, s) for d, s, _ in table.index}, key=lambda t: (t[0], _setting_key(t[1])))
    seeds = result.get("args", {}).get("seeds", "?")
    lines = [
        "# Tabular augmentation benchmark",
        "",
        f"Command: `{command}`",
        "",
        f"Wall time: {elapsed / 60:.1f} min on {platform.processor() or platform.machine()} "
        f"(torch threads = 1; shared machine). Test part never used for fitting; {seeds} seeds.",
        "",
        f"`{SEMI}` = the `flowaug` FlowOversampler fitted on the same k labelled rows per class "
        "plus the unused rows of the 70% train part with label -1 (their labels never read); it "
        "adds the same synthetic counts as every other arm. It runs only in the k-per-class "
        "settings (the imbalanced variant uses every majority row, so it has no unused rows "
        "that are not a label leak; skipped there: '-').",
    ]
    v = verdicts(result)
    head = v[v["classifier"].isin(HEADLINE_CLASSIFIERS)] if len(v) else v
    if len(head):
        lines += [
            "",
            f"## Headline: {SEMI} vs real only and SMOTE, LogisticRegression and MLP only",
            "",
            "Paired over seeds, in balanced-accuracy points (mean; wins out of seeds). "
            "HistGradientBoosting is left out of the headline on purpose (it cannot split "
            "10-50 rows, so any added rows lift it; its figures are below).",
            "",
            "| dataset | setting | classifier | semi - real | semi - SMOTE | beats both |",
            "|---|---|---|---|---|---|",
        ]
        head = head.assign(_k=head["setting"].map(_setting_key)).sort_values(
            ["dataset", "_k", "classifier"]
        )
        for _, r in head.iterrows():
            lines.append(
                f"| {r['dataset']} | {r['setting']} | {r['classifier']} | "
                f"{_points(r['mean_real'])} ({r['wins_real']}/{r['seeds_real']}) | "
                f"{_points(r['mean_smote'])} ({r['wins_smote']}/{r['seeds_smote']}) | "
                f"{'yes' if r['beats_both'] else 'no'} |"
            )
        n_yes, n_all = int(head["beats_both"].sum()), len(head)
        grid = head.groupby(["dataset", "classifier"])[["mean_real", "mean_smote"]].mean()
        lines += [
            "",
            f"Beats both real only and SMOTE (mean paired difference > 0 for each) in {n_yes} "
            f"of {n_all} dataset x k x classifier cells (LogisticRegression, MLP); a 'yes' "
            "compares means only and is no significance test (standard deviations over seeds "
            "under 'Paired differences').",
            "",
            f"Averaged over the k-grid (k = {ks}), paired differences in points:",
            "",
            "| dataset | classifier | semi - real | semi - SMOTE |",
            "|---|---|---|---|",
        ]
        for (dataset, clf), r in grid.iterrows():
            lines.append(
                f"| {dataset} | {clf} | {_points(r['mean_real'])} | {_points(r['mean_smote'])} |"
            )
        holds = [
            f"{dataset} / {clf}"
            for (dataset, clf), r in grid.iterrows()
            if r["mean_real"] > 0 and r["mean_smote"] > 0
        ]
        lines += [
            "",
            "Target (semi-supervised flowaug beats real only and SMOTE for LogisticRegression "
            "and the MLP), on the k-grid average: "
            + (
                f"holds for {', '.join(holds)}."
                if holds
                else "holds for no dataset and classifier."
            ),
        ]
    lines += ["", "## Balanced accuracy per classifier", ""]
    lines.append("Balanced accuracy on the held-out 30%, mean +- standard deviation over seeds.")
    for clf in clfs:
        lines += [
            "",
            f"### {clf}: {CLF_NAMES[clf]}",
            "",
            "| dataset | setting | " + " | ".join(arms) + " |",
            "|---|---|" + "---|" * len(arms),
        ]
        for dataset, setting in blocks:
            cells = []
            for arm in arms:
                if (dataset, setting, arm) in table.index:
                    r = table.loc[(dataset, setting, arm)]
                    cells.append(f"{r[clf]:.3f} +- {r[clf + '_sd']:.3f}")
                else:
                    cells.append("-")
            lines.append(f"| {dataset} | {setting} | " + " | ".join(cells) + " |")
        grid = table[table.index.get_level_values("setting").str.startswith("k=")]
        if len(grid):
            lines += ["", f"Average over the k-grid (k = {ks}):", ""]
            lines += ["| dataset | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
            for dataset, block in grid.groupby(level="dataset"):
                means = block.groupby(level="arm")[clf].mean()
                lines.append(
                    f"| {dataset} | "
                    + " | ".join(f"{means[a]:.3f}" if a in means else "-" for a in arms)
                    + " |"
                )
    diffs = [
        (SEMI, "real"),
        (SEMI, "smote"),
        (SEMI, "flowaug"),
        ("flowaug", "real"),
        ("flowaug", "smote"),
    ]
    diff_tables = {pair: paired(result, *pair) for pair in diffs if {*pair} <= present}
    if diff_tables:
        names = list(diff_tables)
        lines += [
            "",
            "## Paired differences per classifier",
            "",
            "Points of balanced accuracy, mean +- sd over seeds (wins out of seeds); "
            "`semi` = flowaug semi-supervised.",
            "",
            "| dataset | setting | classifier | "
            + " | ".join(f"{a.replace(SEMI, 'semi')} - {b}" for a, b in names)
            + " |",
            "|---|---|---|" + "---|" * len(names),
        ]
        index = {
            pair: d.set_index(["dataset", "setting", "classifier"])
            for pair, d in diff_tables.items()
            if len(d)
        }
        for dataset, setting in blocks:
            for clf in clfs:
                cells = []
                for pair in names:
                    d = index.get(pair)
                    if d is None or (dataset, setting, clf) not in d.index:
                        cells.append("-")
                        continue
                    r = d.loc[(dataset, setting, clf)]
                    cells.append(
                        f"{_points(r['mean'])} +- {100 * r['sd']:.1f} "
                        f"({int(r['wins'])}/{int(r['seeds'])})"
                    )
                lines.append(f"| {dataset} | {setting} | {clf} | " + " | ".join(cells) + " |")
    if len(fid_table):
        lines += [
            "",
            "## Fidelity",
            "",
            "Synthetic vs held-out real rows of the same class (lower is "
            "better; 'real' = the training rows themselves):",
            "",
            "| dataset | setting | arm | Wasserstein-1 | KS | corr. diff |",
            "|---|---|---|---|---|---|",
        ]
        for (dataset, setting, arm), r in fid_table.iterrows():
            lines.append(
                f"| {dataset} | {setting} | {arm} | {r['wasserstein']:.3f} | "
                f"{r['ks']:.3f} | {r['corr']:.3f} |"
            )
    lines += [
        "",
        "## Reading the tables",
        "",
        "HistGradientBoosting keeps its default `min_samples_leaf=20`, so on "
        "10-30 real rows it cannot split and predicts one class (0.500 / 0.333): every "
        "augmentation arm lifts it by adding rows, which inflates all gains over 'real' at "
        "k <= 10; compare the augmentation arms with each other there, and look at the "
        "LogisticRegression and MLP figures. flowaug chooses on held-out labelled rows (20% of "
        "each class, at least one) between the trained flow and its data-dependent "
        "initialization (a class-conditional Gaussian copula in flow form: quantile-Gaussianized "
        "columns, shrunk pooled within-class covariance, per-class means and scales); the counts "
        "below say which one each fit kept. When the semi-supervised fit keeps the "
        "initialization, the unlabelled rows still shaped the column encoders (quantiles), but "
        "not the flow itself.",
    ]
    sel = result.get("flow_selected", {})
    if sel:
        lines += [
            "",
            "flowaug model kept by validation (trained flow vs its data-dependent "
            "initialization), fits per arm and setting: "
            + "; ".join(
                f"{k}: {v.count('trained')} trained / {v.count('init')} init"
                for k, v in sel.items()
            ),
        ]
    t = result["timing_s"]
    lines += [
        "",
        "Time per arm (fit + generate + classifiers, whole run): "
        + ", ".join(f"{a} {t[a]:.0f} s" for a in arms),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, k=5")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 10, 25])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--no-imbalanced", dest="imbalanced", action="store_false")
    parser.add_argument(
        "--synth-per-k",
        type=int,
        default=4,
        help="balanced settings add synth_per_k * k synthetic rows per class",
    )
    parser.add_argument(
        "--flow-params",
        default="",
        help="JSON of FlowOversampler arguments (default: its defaults)",
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--name", default="tabular", help="results file stem")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.ks = 1, [5]
        if args.name == "tabular":  # keep the full run's results
            args.name = "tabular.quick"
    start = time.perf_counter()
    result = run(args)
    elapsed = time.perf_counter() - start
    command = "python benchmarks/tabular.py" + (
        ""
        if argv is None and len(sys.argv) == 1
        else " " + " ".join(sys.argv[1:] if argv is None else argv)
    )
    table, fid_table = summarize(result)
    result.update(
        command=command,
        elapsed_s=elapsed,
        args=vars(args),
        summary=table.reset_index().to_dict(orient="records"),
        paired=verdicts(result).to_dict(orient="records"),
        fidelity_summary=fid_table.reset_index().to_dict(orient="records")
        if len(fid_table)
        else [],
        torch=torch.__version__,
        python=platform.python_version(),
        cpu_count=os.cpu_count(),
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    md = markdown(result, command, elapsed)
    (out / f"{args.name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
