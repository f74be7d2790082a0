"""Old home of the column encoders: :mod:`flowaug.tabular`."""

# shim: removed in the final sweep of issue 11
from flowaug.flows.tabular import redequantize  # noqa: F401
from flowaug.tabular import *  # noqa: F403
