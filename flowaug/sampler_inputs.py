"""Old home of the oversampler's inputs: :mod:`flowaug.integrations.sampler_inputs`."""

# shim: removed in the final sweep of issue 11
from flowaug.integrations.sampler_inputs import *  # noqa: F403
