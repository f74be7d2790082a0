"""``python -m flowaug``: the ``flowaug`` command, also for launchers (``torchrun -m flowaug``)."""

import sys

from flowaug.cli import main

sys.exit(main())
