"""Drawing synthetic data from a trained flow: temperature sampling and the quality filter
(``generation.py``), the synthetic bank (``bank.py``).

Samples leave the flow in *model space* (float, for images ``[0, 1]``); images are snapped to the
data's intensity grid (``model.levels`` values, ``k / (levels - 1)``) and stored as integer codes
``k``. The quality filter keeps a sample of class ``c`` only if the flow itself, by Bayes' rule
(:meth:`~flowaug.flows.base.ConditionalFlow.classify`), gives ``p(c | x) >= filter_threshold``.
"""

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
