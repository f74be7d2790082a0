"""Moved to :mod:`flowaug.integrations.torchdata`."""

# shim: removed in the final sweep of issue 11
from flowaug.integrations.torchdata import *  # noqa: F403
from flowaug.integrations.torchdata import SyntheticDataset, mix_datasets  # noqa: F401
