"""Replace a finished output folder by a new, complete one, so that a kill at any moment leaves
the old output or the new one in place, and a rerun cleans up after a killed one.

:func:`replace_folder` swaps the two folders in one atomic ``renameat2(RENAME_EXCHANGE)`` call
where the system offers it (Linux), then deletes the old output. Elsewhere it renames the old
output aside and the new one into place: a kill between the two renames leaves no ``out``
folder for a moment, and :func:`recover_folder`, which a rerun calls first, puts the old output
back. Leftovers of killed runs (a half-written ``.NAME.tmp-*`` folder, an old output that was
being deleted) are removed by :func:`recover_folder` too.

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "out").mkdir(); (root / "out" / "old.txt").touch()
    >>> new = staging_folder(root / "out"); (new / "new.txt").touch()
    >>> replace_folder(new, root / "out")
    >>> sorted(p.name for p in (root / "out").iterdir()), sorted(p.name for p in root.iterdir())
    (['new.txt'], ['out'])
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import sys
import uuid
from pathlib import Path

__all__ = ["recover_folder", "replace_folder", "staging_folder"]

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _rename(src: Path, dst: Path) -> None:
    os.replace(src, dst)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; ``False`` where the system or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # a C library without renameat2 (glibc < 2.28, musl)
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.ENOTSUP):
        return False
    raise OSError(code, f"cannot swap {a} and {b}: {os.strerror(code)}")


def _trail(out: Path, kind: str) -> Path:
    return out.parent / f".{out.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def staging_folder(out: Path) -> Path:
    """A new empty hidden folder next to ``out`` to write the replacement into."""
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _trail(out, "tmp")
    tmp.mkdir()  # not tempfile.mkdtemp: the folder keeps the umask's permissions, not 0700
    return tmp


def replace_folder(new: Path, out: Path) -> None:
    """Make the complete folder ``new`` (from :func:`staging_folder`) be ``out``.

    An absent or empty ``out`` is replaced by one rename; a non-empty one is swapped with
    ``new`` atomically where possible (else renamed aside first) and deleted afterwards.
    """
    new, out = Path(new).absolute(), Path(out).absolute()
    if not out.is_dir() or not any(out.iterdir()):
        _rename(new, out)  # replaces an empty folder atomically on POSIX
        return
    if _exchange(new, out):
        shutil.rmtree(new, ignore_errors=True)  # it holds the old output now
        return
    old = _trail(out, "old")
    _rename(out, old)
    try:
        _rename(new, out)
    except BaseException:
        _rename(old, out)  # put the previous output back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _alive(name: str) -> bool:
    """Whether the process that made the trail folder ``.NAME.KIND-PID-HEX`` still runs."""
    try:
        pid = int(name.rsplit("-", 2)[-2])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, under another user
        return True
    return True


def recover_folder(out: Path) -> str | None:
    """Repair what a killed :func:`replace_folder` (or write into a staging folder) left.

    If ``out`` is missing and an old output was renamed aside, it is put back; every other
    leftover of a finished process is deleted. Returns a note of what was restored, or None.
    """
    out = Path(out).absolute()
    if not out.parent.is_dir():
        return None
    trails = [
        p
        for kind in ("old", "tmp")
        for p in out.parent.glob(f".{out.name}.{kind}-*")
        if p.is_dir() and not _alive(p.name)
    ]
    note = None
    olds = sorted((p for p in trails if ".old-" in p.name), key=lambda p: p.stat().st_mtime)
    if not out.exists() and olds:
        _rename(olds[-1], out)
        trails.remove(olds[-1])
        note = f"restored {out} from an interrupted replacement (the previous output)"
    for p in trails:
        shutil.rmtree(p, ignore_errors=True)
    return note
