"""Atomic file writes: write a temporary file in the target's folder, fsync it, then rename over the target."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def temp_path_for(path: Path) -> Path:
    """A unique hidden temporary name next to `path` (same folder, so the final rename is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def _fsync_file(path: Path) -> None:
    """Flush the file's data to disk so a power loss after the rename cannot leave an empty target."""
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)  # Windows needs write access to flush
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX only; directories cannot be opened on Windows)."""
    if os.name == "nt":
        return
    with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories; the data is safe anyway
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def default_file_mode() -> int:
    """The mode open() gives a new file: 0o666 less the umask (read from /proc; os.umask() would race threads)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    return 0o644


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path` atomically, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp}: nothing was written to the temporary file for {path}")
        if os.name != "nt":  # writers such as safetensors create 0600 files; give the usual mode instead
            os.chmod(tmp, default_file_mode())
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        # BaseException too: a KeyboardInterrupt mid-write must not leave temporary files behind.
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes to `path` atomically (readers see the old file or the new one, never a partial one)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "xb") as fh:
        fh.write(data)
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write text to `path` atomically."""
    return atomic_write_bytes(path, text.encode(encoding))


def remove_stale_temps(folder: str | Path, older_than_s: float = 3600.0) -> int:
    """Delete temporary files left by killed writers in `folder`; return how many were removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    # The age guard keeps the temp file of a writer that is still running (another process or thread).
    cutoff = time.time() - older_than_s
    removed = 0
    for tmp in folder.glob(f".*{TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            if tmp.is_file() and tmp.stat().st_mtime < cutoff:
                tmp.unlink()
                removed += 1
    return removed
