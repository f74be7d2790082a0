"""Flow models and their layers on tensors (no training, no I/O, no pandas)."""

from flowaug.flows.affine1d import AffineFlow1D
from flowaug.flows.base import ConditionalFlow, FlowLayer
from flowaug.flows.glow import Glow
from flowaug.flows.tabular import FeatureFlow

__all__ = ["AffineFlow1D", "ConditionalFlow", "FeatureFlow", "FlowLayer", "Glow"]
