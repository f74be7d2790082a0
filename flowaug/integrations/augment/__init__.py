"""torchvision: :class:`FlowAugment`, a v2 transform that swaps images for flow samples of the
same class (``transform.py``), its two algorithms (``strategies.py``) and how it reads labels
(``labels.py``)."""

from flowaug.integrations.augment.labels import default_labels_getter
from flowaug.integrations.augment.transform import FlowAugment

__all__ = ["FlowAugment", "default_labels_getter"]
