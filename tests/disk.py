"""A real full disk for the tests: a tmpfs of a few kilobytes mounted on a directory (root may
mount one in this container and in CI). Writes past its size fail in the kernel with ENOSPC,
exactly as on a full archive disk; no Python is patched. Without the right to mount, the test
fails and says why (never skipped)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# Room for a few small files, far less than a report's PDF (well over 50 KiB).
SIZE = "16k"


class FullDisk:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def make_room(self, size: str = "64m") -> None:
        """What an administrator does: the same file system, now with room."""
        subprocess.run(
            ["mount", "-o", f"remount,size={size}", str(self.directory)], check=True, timeout=30
        )

    def files(self) -> list[Path]:
        return files_under(self.directory)


@contextmanager
def full_disk(directory: Path, *, size: str = SIZE) -> Iterator[FullDisk]:
    """`directory` on a tiny tmpfs while the block runs (what was in it is hidden meanwhile)."""
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if mounted.returncode != 0:
        pytest.fail(
            f"a full disk is simulated with a small tmpfs, which needs root (mount): "
            f"{mounted.stderr.strip()}"
        )
    try:
        yield FullDisk(directory)
    finally:
        subprocess.run(["umount", "--lazy", str(directory)], check=True, timeout=30)


def files_under(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*") if path.is_file())
