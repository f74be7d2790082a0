"""Flow models and their layers on tensors (no training, no I/O, no pandas)."""

import importlib
from typing import Any

from flowaug.flows.affine1d import AffineFlow1D
from flowaug.flows.base import ConditionalFlow, FlowLayer
from flowaug.flows.glow import Glow
from flowaug.flows.tabular import FeatureFlow

__all__ = ["AffineFlow1D", "ConditionalFlow", "FeatureFlow", "FlowLayer", "Glow", "TabularFlow"]


def __getattr__(name: str) -> Any:
    # TabularFlow (FeatureFlow + column encoders) lives a layer up, in flowaug.tabular, with pandas
    if name == "TabularFlow":
        return importlib.import_module("flowaug.tabular").TabularFlow
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
