"""Old path of :mod:`flowaug.integrations.hf.imagefolder`."""

# shim: removed in the final sweep of issue 11
from flowaug.integrations.hf.imagefolder import *  # noqa: F403
