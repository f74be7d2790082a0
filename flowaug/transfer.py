from flowaug.training.transfer import *  # noqa: F403  # shim: removed in the final sweep of issue 11
