"""Old home of the oversampler: :mod:`flowaug.integrations.oversample`."""

# shim: removed in the final sweep of issue 11
from flowaug.integrations.oversample import *  # noqa: F403
