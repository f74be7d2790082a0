"""Flow models and their layers (no training, no I/O)."""

from flowaug.flows.affine1d import AffineFlow1D
from flowaug.flows.base import ConditionalFlow, FlowLayer
from flowaug.flows.glow import Glow
from flowaug.flows.tabular import TabularFlow

__all__ = ["AffineFlow1D", "ConditionalFlow", "FlowLayer", "Glow", "TabularFlow"]
