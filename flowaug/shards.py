"""Old path of :mod:`flowaug.integrations.hf.shards`."""

# shim: removed in the final sweep of issue 11
from flowaug.integrations.hf.shards import *  # noqa: F403
