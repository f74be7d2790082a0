from flowaug.training.batches import SemiSupervisedBatches, stream_indices  # noqa: F401  # shim: removed in the final sweep of issue 11
from flowaug.training.semi_supervised import *  # noqa: F403  # shim: removed in the final sweep of issue 11
