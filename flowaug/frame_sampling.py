"""Old home of chunked frame sampling: :mod:`flowaug.tabular.frames`."""

# shim: removed in the final sweep of issue 11
from flowaug.tabular.frames import *  # noqa: F403
