"""Moved to :mod:`flowaug.integrations.augment`."""

# shim: removed in the final sweep of issue 11
from flowaug.integrations.augment import *  # noqa: F403
from flowaug.integrations.augment import FlowAugment, default_labels_getter  # noqa: F401
