"""Drawing synthetic data from a trained flow: temperature sampling, quality filter, bank.

Samples leave the flow in *model space* (float, for images ``[0, 1]``). Images are then snapped
to the data's intensity grid (``model.levels`` values, ``k / (levels - 1)``) so synthetic images
look like real ones, and stored compactly as integer codes ``k``.

The quality filter keeps a sample of class ``c`` only if the flow itself, by Bayes' rule
(:meth:`~flowaug.flows.base.ConditionalFlow.classify`), gives ``p(c | x) >= filter_threshold``;
it oversamples so each class still gets its quota.
"""

# shim: removed in the final sweep of issue 11 (benchmarks/dev imports it from here)
from flowaug.pixels import model_to_image  # noqa: F401
from flowaug.sampling.bank import SyntheticBank, check_bank_size
from flowaug.sampling.generation import (
    GenerationStats,
    class_counts,
    eval_mode,
    generate,
    iter_synthetic,
    posterior_filter,
    sample_per_class,
)

__all__ = [
    "GenerationStats",
    "SyntheticBank",
    "check_bank_size",
    "class_counts",
    "eval_mode",
    "generate",
    "iter_synthetic",
    "posterior_filter",
    "sample_per_class",
]
