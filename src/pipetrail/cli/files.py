"""Writing the files a command is asked for: ``-o FILE`` exports, reports, step summaries.

A file is written whole or not at all (a temporary file in the same folder, then renamed
over the target), with the permissions any new file gets, ``0o666`` less the umask, or
those of the file it replaces; ``tempfile.mkstemp`` would make it ``0o600`` whatever the
umask. A target that is not a regular file (``/dev/stdout``, a named pipe) is written
directly. Every ``OSError`` becomes an :class:`~pipetrail.errors.OutputFileError` naming
the file and, for a full disk, its folder. Imports only the standard library and
``pipetrail.errors``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from typing import TYPE_CHECKING

from pipetrail.errors import OutputFileError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["append_text", "output_file_error", "write_text"]

_NEW_FILE_MODE = 0o666  # the umask applies, as for any file a program creates
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` whole, creating its folder if needed.

    Raises:
        OutputFileError: the file or its folder cannot be written (nothing is left
            behind; an existing file keeps its content).
    """
    data = text.encode("utf-8")
    with _reporting(path):
        if path.exists() and not path.is_file():
            with path.open("wb") as out:  # a device or a pipe: no rename possible
                out.write(data)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, _FLAGS, _NEW_FILE_MODE)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                with contextlib.suppress(FileNotFoundError):
                    os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))  # keep the old mode
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


def append_text(path: Path, text: str) -> None:
    """Append ``text`` (UTF-8) to ``path``, creating the file if needed.

    Raises:
        OutputFileError: the file cannot be written.
    """
    with _reporting(path), path.open("a", encoding="utf-8") as out:
        out.write(text)


@contextlib.contextmanager
def _reporting(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise output_file_error(path, exc) from exc


def output_file_error(path: Path, exc: OSError) -> OutputFileError:
    """Describe an ``OSError`` met while writing ``path``, with a fix chosen by errno."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        folder = path.absolute().parent
        fix = f"free disk space in {folder}, or write the file elsewhere"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "write it to a folder the current user may write to"
    else:
        fix = "check that the path names a file in a folder that can be written"
    return OutputFileError(f"cannot write {path}: {reason}; {fix}", path=str(path), errno=exc.errno)
