"""The subcommand registry: a module adds ``flowaug <name>`` with
``@command("augment", help="...", arguments=_augment_arguments)`` on a function of the parsed
arguments that returns the exit code, and :func:`main` builds one ``argparse`` sub-parser (with
``--help``) per registered command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Command", "COMMANDS", "command", "build_parser", "main"]


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, one-line help, argument declarations and what it runs."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    description: str | None = None


COMMANDS: dict[str, Command] = {}


def command(
    name: str, *, help: str, arguments: Callable[[argparse.ArgumentParser], None],
    description: str | None = None,
) -> Callable[[Callable[[argparse.Namespace], int | None]], Callable]:
    """Register the decorated function as ``flowaug <name>``; it returns an exit code."""

    def register(run: Callable[[argparse.Namespace], int | None]) -> Callable:
        if name in COMMANDS:
            raise ValueError(f"flowaug subcommand {name!r} is already registered.")
        COMMANDS[name] = Command(name, help, arguments, run, description)
        return run

    return register


class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: ...)`` where an option has a fixed default; options whose default
    depends on the data say so in their help instead of showing ``None``."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The ``flowaug`` parser with one sub-parser per registered command."""
    from flowaug import __version__

    about = "Expand scarce datasets with class-conditional normalizing flows."
    parser = argparse.ArgumentParser(prog="flowaug", description=about)
    parser.add_argument("--version", action="version", version=f"flowaug {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description or cmd.help,
                           formatter_class=_DefaultsHelpFormatter)
        cmd.arguments(p)
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flowaug`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (OSError, ValueError, TypeError, ImportError) as err:  # OSError: file system
        print(f"flowaug {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C outside a training loop: nothing half-written to keep
        print(f"flowaug {args.command}: interrupted", file=sys.stderr)
        return 130
