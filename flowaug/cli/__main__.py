"""``python -m flowaug.cli``: the ``flowaug`` command."""

import sys

from flowaug.cli import main

sys.exit(main())
