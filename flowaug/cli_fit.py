# shim: removed in the final sweep of issue 11
from flowaug.cli.fit_plan import *  # noqa: F403
