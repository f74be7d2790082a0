"""Stopping a training run from outside: Ctrl-C (SIGINT) and SIGTERM.

:class:`~flowaug.training.FlowTrainer` runs its loop under :func:`raise_on_sigterm`, so that
both signals end it the same way: the loop stops, the best weights so far are kept (and saved
when there is an ``output_dir``), and :class:`TrainingInterrupted` is raised. It is a
``KeyboardInterrupt``, so code that already stops on Ctrl-C still does.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["TrainingInterrupted", "raise_on_sigterm", "signal_name", "signum_of"]


class _Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler that :func:`raise_on_sigterm` installs."""


class TrainingInterrupted(KeyboardInterrupt):
    """A training run stopped by SIGINT or SIGTERM after keeping what it had learned.

    Attributes:
        signum: ``signal.SIGINT`` or ``signal.SIGTERM``.
        history: the :class:`~flowaug.training.History` up to the interruption.
        output_dir: where the model (best weights so far) was saved, or ``None``.
    """

    def __init__(self, signum: int, history: Any, output_dir: str | None):
        self.signum = int(signum)
        self.history = history
        self.output_dir = output_dir
        where = f"; the best weights so far are saved in {output_dir}" if output_dir else ""
        super().__init__(
            f"training interrupted by {signal_name(signum)} at step {history.steps}{where}"
        )

    @property
    def exit_code(self) -> int:
        """The shell's code for death by this signal: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def signum_of(err: KeyboardInterrupt) -> int:
    """The signal behind a ``KeyboardInterrupt`` caught inside :func:`raise_on_sigterm`."""
    return int(signal.SIGTERM) if isinstance(err, _Terminated) else int(signal.SIGINT)


def raise_on_sigterm() -> Callable[[], None]:
    """Make SIGTERM raise a ``KeyboardInterrupt`` (as SIGINT does) until the returned function
    is called, which puts the previous handler back.

    Only in the main thread and only where SIGTERM has its default action: a handler the
    application installed itself is left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated()

    signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore
