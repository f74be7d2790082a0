# shim: removed in the final sweep of issue 11
from flowaug.io.folders import *  # noqa: F403
from flowaug.io.folders import recover_folder, replace_folder, staging_folder  # noqa: F401
