"""The data sets bundled with scikit-learn, read without a download."""

from dataclasses import replace

import numpy as np
import torch

from flowaug.data.flowdata import FlowData
from flowaug.data.tensors import from_tensors

__all__ = ["SKLEARN_DATASETS", "load_sklearn"]

SKLEARN_DATASETS = ("digits", "iris", "wine", "breast_cancer")


def load_sklearn(name: str) -> FlowData:
    """A data set bundled with scikit-learn (no download).

    Args:
        name: ``"digits"`` (images ``[1797, 1, 8, 8]`` int64 in ``[0, 16]``, ``levels=17``) or a
            tabular set: ``"iris"``, ``"wine"``, ``"breast_cancer"`` (float32 features).
    """
    from sklearn import datasets as skd

    if name not in SKLEARN_DATASETS:
        raise ValueError(
            f"unknown scikit-learn data set {name!r}; choose one of {SKLEARN_DATASETS}."
        )
    bunch = getattr(skd, f"load_{name}")()
    names = [str(c) for c in bunch.target_names]
    if name == "digits":
        x = torch.as_tensor(bunch.images.astype(np.int64))[:, None]
        return from_tensors(x, bunch.target, 17, names, "digits")
    x = torch.as_tensor(bunch.data, dtype=torch.float32)
    data = from_tensors(x, bunch.target, None, names, name)
    return replace(data, feature_names=[str(f) for f in bunch.feature_names])
