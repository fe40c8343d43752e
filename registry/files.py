"""Files written whole or not at all.

Every file the app writes (a report into the archive under MEDIA_ROOT, a command's output, an
export) is written to a temporary file beside its name, flushed to the disk, and only then given
its name. A full disk or a crash half-way leaves nothing under the name, never a truncated file
that looks complete; the temporary file is removed on any error.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.core.files.storage import FileSystemStorage

# No room left: on the disk (ENOSPC), in the user's quota (EDQUOT), or past the largest file
# the process may write (EFBIG).
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in DISK_FULL


@contextmanager
def written_whole(path: Path | str, *, replace: bool = True) -> Iterator[Path]:
    """A temporary path beside `path` for the block to write. When the block ends without an
    error, the file is flushed to the disk and takes the name `path` in one step (with
    replace=False an existing `path` is never replaced: FileExistsError). On any error the
    temporary file is removed and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
    # Created as open() creates files (mode 0666 less the umask), so the file keeps that mode.
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield temporary
        _sync(temporary)
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # fails if the name is taken; the temporary goes below
    finally:
        temporary.unlink(missing_ok=True)
    _sync(path.parent)  # the new name itself survives a power cut


def write_whole(path: Path | str, data: bytes | str, *, replace: bool = True) -> None:
    """Write `data` (text as UTF-8) to `path` whole or not at all (see written_whole)."""
    with written_whole(path, replace=replace) as temporary:
        temporary.write_bytes(data.encode() if isinstance(data, str) else data)


def _sync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class WholeFileStorage(FileSystemStorage):
    """MEDIA_ROOT, the report archive: each file is written whole (written_whole), under the
    name the app gave it, and never replaced. Django's storage would write straight into the
    name and, when the name is taken, invent another with a random suffix: a disk full half-way
    left a truncated file under the real name and the next try beside it under another."""

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        if self.exists(name):
            raise FileExistsError(f"{name} is already in the archive")
        return super().get_available_name(name, max_length=max_length)

    def _save(self, name: str, content: Any) -> str:
        path = Path(self.path(name))
        with written_whole(path, replace=False) as temporary, temporary.open("wb") as stream:
            for chunk in content.chunks():
                stream.write(chunk)
        if self.file_permissions_mode is not None:
            os.chmod(path, self.file_permissions_mode)
        return str(name).replace("\\", "/")
