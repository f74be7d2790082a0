"""``flowaug.hf``: the public path of the Hugging Face ``datasets`` hook, whose code lives in
:mod:`flowaug.integrations.hf`. Permanent, not a shim: users import ``flowaug.hf``."""

from flowaug.integrations.hf import *  # noqa: F403
from flowaug.integrations.hf import __all__  # noqa: F401
