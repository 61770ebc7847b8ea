"""The sweep's on-disk cache: content-hash keys, atomic safetensors entries, corrupt-entry recovery."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .atomic import atomic_path, atomic_write_bytes, atomic_write_text, remove_stale_temps
from .keys import CACHE_VERSION, cache_key, default_cache_dir, file_digest

__all__ = ["CACHE_VERSION", "CacheWarning", "DiskCache", "atomic_path", "atomic_write_bytes",
           "atomic_write_text", "cache_key", "default_cache_dir", "file_digest", "tensor_checksum"]

ENTRY_SUFFIX = ".safetensors"
_VERSION_KEY = "wiseft_cache_version"
_CHECKSUM_KEY = "wiseft_checksum"
_META_KEY = "wiseft_meta"
_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}$")  # keeps keys inside the cache folder

class CacheWarning(UserWarning):
    """A cache entry could not be used (truncated, wrong version, checksum mismatch) and will be recomputed."""


def tensor_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and raw bytes of the tensors (in name order)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        # Byte view works for every dtype (bf16 and bool included) without a copy.
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def _storable(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, and no two entries sharing memory (safetensors refuses shared storage)."""
    out, seen = {}, set()
    for name, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"cache entry value {name!r} is a {type(value).__name__}, not a tensor")
        t = value.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None and ptr in seen:
            t = t.clone()
        elif ptr is not None:
            seen.add(ptr)
        out[name] = t
    return out


class DiskCache:
    """A folder of safetensors entries keyed by `cache_key`; bad entries are dropped with a CacheWarning."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.root)  # leftovers of writers killed mid-write
        self.hits = 0
        self.misses = 0
        self.writes = 0
        self._lock = threading.Lock()  # counters are shared by the sessions (threads) using one cache

    def path_for(self, key: str) -> Path:
        """The file that holds the entry for `key`."""
        if not _KEY_PATTERN.match(key):
            raise ValueError(f"invalid cache key {key!r}: use cache_key(...) to make keys")
        return self.root / f"{key}{ENTRY_SUFFIX}"

    def __contains__(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def get(self, key: str) -> dict[str, torch.Tensor] | None:
        """The tensors stored under `key`, or None (missing or unusable; the caller recomputes)."""
        entry = self.get_entry(key)
        return None if entry is None else entry[0]

    def get_entry(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The tensors and caller metadata stored under `key`, or None when missing or unusable."""
        path = self.path_for(key)
        try:
            tensors, meta = self._read(path)
        except FileNotFoundError:
            self._count(hit=False)
            return None
        except _BadEntry as exc:
            self._discard(path, str(exc))
            self._count(hit=False)
            return None
        self._count(hit=True)
        return tensors, meta

    def put(self, key: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> Path:
        """Store tensors (+ JSON-able metadata) under `key`, atomically; returns the entry's path."""
        path = self.path_for(key)
        tensors = _storable(tensors)
        header = {_VERSION_KEY: str(CACHE_VERSION), _CHECKSUM_KEY: tensor_checksum(tensors),
                  _META_KEY: json.dumps(meta or {}, sort_keys=True)}
        with atomic_path(path) as tmp:  # streamed to disk: no second in-memory copy of the tensors
            save_file(tensors, str(tmp), metadata=header)
        with self._lock:
            self.writes += 1
        return path

    def discard(self, key: str) -> bool:
        """Remove one entry if it exists; True when there was one."""
        try:
            self.path_for(key).unlink()
        except FileNotFoundError:
            return False
        return True

    def clear(self) -> int:
        """Remove every entry (and stale temporary files); return how many entries were removed."""
        removed = 0
        for path in self.root.glob(f"*{ENTRY_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):  # another session removed it first
                path.unlink()
                removed += 1
        # Fresh temp files belong to writers still running in other sessions: deleting them would fail their put.
        remove_stale_temps(self.root)
        return removed

    def reset_stats(self) -> None:
        """Zero the hit/miss/write counters."""
        with self._lock:
            self.hits = self.misses = self.writes = 0

    def _count(self, *, hit: bool) -> None:
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1

    def _read(self, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Load and verify one entry; raises FileNotFoundError or _BadEntry."""
        if not path.is_file():
            raise FileNotFoundError(path)
        try:
            with safe_open(str(path), framework="pt") as fh:
                header = fh.metadata() or {}
                names = fh.keys()  # safe_open handles are not iterable
                tensors = {name: fh.get_tensor(name) for name in names}
        except FileNotFoundError:
            raise
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:  # truncated or bad header, unreadable
            raise _BadEntry(f"unreadable (truncated or corrupt: {exc})") from exc
        version = header.get(_VERSION_KEY)
        if version != str(CACHE_VERSION):
            raise _BadEntry(f"from cache version {version}, expected {CACHE_VERSION}")
        if header.get(_CHECKSUM_KEY) != tensor_checksum(tensors):
            raise _BadEntry("damaged (checksum mismatch)")
        try:
            meta = json.loads(header.get(_META_KEY, "{}"))
        except json.JSONDecodeError as exc:
            raise _BadEntry(f"damaged (metadata is not JSON: {exc})") from exc
        return tensors, meta

    def _discard(self, path: Path, reason: str) -> None:
        """Warn about and delete an unusable entry so the next put writes a fresh one."""
        message = f"cache entry {path.name} is {reason}; removed, it will be recomputed"
        warnings.warn(message, CacheWarning, stacklevel=3)
        try:
            path.unlink()
        except FileNotFoundError:  # another session already removed it
            pass
        except OSError as exc:  # read-only cache folder: still usable, the entry is just recomputed each time
            warnings.warn(f"could not remove bad cache entry {path}: {exc}", CacheWarning, stacklevel=3)


class _BadEntry(Exception):
    """Internal: an entry exists but cannot be used."""
