"""Moved to :mod:`flowaug.integrations.augment.labels`."""

# shim: removed in the final sweep of issue 11
from flowaug.integrations.augment.labels import *  # noqa: F403
