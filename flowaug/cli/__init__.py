"""The ``flowaug`` command: ``flowaug quickstart | fit | sample | augment | generate | evaluate``,
one module per subcommand (each parses its options, calls the library and prints), registered
with :func:`flowaug.cli.registry.command`."""

# isort: off
# registered in the order `flowaug --help` lists them
from flowaug.cli import quickstart, fit, sample, augment, generate, evaluate  # noqa: F401
# isort: on
from flowaug.cli.quickstart import (
    QUICKSTART_MODEL,
    QUICKSTART_STEPS,
    QUICKSTART_TRAIN,
    quickstart_split,
)
from flowaug.cli.registry import COMMANDS, Command, build_parser, command, main

__all__ = ["COMMANDS", "Command", "QUICKSTART_MODEL", "QUICKSTART_STEPS", "QUICKSTART_TRAIN",
           "build_parser", "command", "main", "quickstart_split"]
