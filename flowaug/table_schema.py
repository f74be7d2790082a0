"""Old home of the table check: :mod:`flowaug.tabular.schema`."""

# shim: removed in the final sweep of issue 11
from flowaug.tabular.schema import *  # noqa: F403
