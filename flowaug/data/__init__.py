"""Adapters from user data to tensors the trainer and models consume.

Everything ends as a :class:`FlowData`: ``x`` (all samples in memory, as befits scarce data),
integer labels ``y``, the number of intensity ``levels`` for integer images, and class names.

Integer images stay integer (``uint8`` or ``int64``): the trainer hands each batch to
``model.prepare_batch``, which dequantizes it with fresh noise every time, so the flow never sees
the same continuous point twice and its bits/dim stay comparable with published numbers.

Example:
    >>> data = load_sklearn("digits")
    >>> data.x.shape, data.x.dtype, data.levels, data.num_classes
    (torch.Size([1797, 1, 8, 8]), torch.int64, 17, 10)
    >>> data.class_names[:3]
    ['0', '1', '2']
"""

from flowaug.data.flowdata import FlowData
from flowaug.data.folders import IMAGE_EXTENSIONS, load_image_folder, resize_images
from flowaug.data.hf_datasets import find_columns, to_hf_dataset
from flowaug.data.load import as_flow_data, load_data, load_hf_dataset
from flowaug.data.sklearn import SKLEARN_DATASETS, load_sklearn

__all__ = [
    "FlowData", "as_flow_data", "load_sklearn", "load_data", "load_image_folder", "load_hf_dataset",
    "to_hf_dataset", "find_columns", "resize_images", "SKLEARN_DATASETS", "IMAGE_EXTENSIONS",
]
