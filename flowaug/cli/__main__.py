"""``python -m flowaug.cli``: the ``flowaug`` command."""

from flowaug.cli import main

raise SystemExit(main())
