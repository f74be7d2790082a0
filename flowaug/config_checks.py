# shim: removed in the final sweep of issue 11
from flowaug.io.config_checks import *  # noqa: F403
from flowaug.io.config_checks import FIELDS, check_model_config, estimate_state_bytes  # noqa: F401
from flowaug.sizes import check_fits_in_memory, format_bytes, memory_limit_bytes  # noqa: F401
