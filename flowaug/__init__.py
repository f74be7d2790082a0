"""flowaug: expand scarce datasets with class-conditional normalizing flows."""

from flowaug.allocator import keep_freed_memory
from flowaug.flows import AffineFlow1D, ConditionalFlow, Glow
from flowaug.integrations.torchdata import SyntheticDataset
from flowaug.io import load
from flowaug.sampling import SyntheticBank
from flowaug.training import FlowTrainer, TrainConfig, fit

__version__ = "0.1.0"

# glibc hands freed activations back to the kernel after every pass; keep them (2x faster
# sampling on a CPU; opt out with FLOWAUG_KEEP_FREED_MEMORY=0): see flowaug.allocator
keep_freed_memory()

__all__ = [
    "AffineFlow1D",
    "ConditionalFlow",
    "Glow",
    "TabularFlow",
    "FlowOversampler",
    "__version__",
    "FlowTrainer",
    "TrainConfig",
    "fit",
    "load",
    "FlowAugment",
    "SyntheticBank",
    "SyntheticDataset",
    "hf",
    "keep_freed_memory",
]


def __getattr__(name: str):
    # FlowAugment needs torchvision and hf needs datasets: import them on first use only
    if name == "FlowAugment":
        from flowaug.integrations.augment import FlowAugment

        return FlowAugment
    if name == "TabularFlow":  # pandas is imported on first use only
        from flowaug.tabular import TabularFlow

        return TabularFlow
    if name == "FlowOversampler":  # scikit-learn is imported on first use only
        from flowaug.integrations.oversample import FlowOversampler

        return FlowOversampler
    if name == "hf":
        import importlib

        return importlib.import_module("flowaug.hf")
    raise AttributeError(f"module 'flowaug' has no attribute {name!r}")
