"""flowaug: expand scarce datasets with class-conditional normalizing flows."""

from flowaug.flows import AffineFlow1D, ConditionalFlow, Glow

__version__ = "0.1.0"

__all__ = ["AffineFlow1D", "ConditionalFlow", "Glow", "__version__"]
