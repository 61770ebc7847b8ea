"""The on-disk cache: keys, digests, atomic writes, corrupt-entry recovery, and a writer killed mid-write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from wiseft_explorer.store import (
    CACHE_VERSION,
    CacheWarning,
    DiskCache,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    cache_key,
    default_cache_dir,
    file_digest,
    remove_stale_temps,
    tensor_checksum,
)
from wiseft_explorer.store import atomic as atomic_mod
from wiseft_explorer.store import keys as keys_mod

REPO = Path(__file__).resolve().parents[1]


def tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"logits": torch.randn(7, 3, generator=g), "labels": torch.arange(7),
            "half": torch.randn(4, generator=g).to(torch.bfloat16), "mask": torch.tensor([True, False])}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_cache_key_stable_and_sensitive(tmp_path):
    key = cache_key(model="m", alphas=(0.0, 0.5), path=tmp_path, dtype=torch.float16, classes={"b", "a"})
    assert key == cache_key(classes={"a", "b"}, dtype=torch.float16, path=tmp_path, alphas=[0.0, 0.5], model="m")
    assert len(key) == 64 and int(key, 16) >= 0
    assert key != cache_key(model="m", alphas=(0.0, 0.55), path=tmp_path, dtype=torch.float16, classes={"a", "b"})
    assert cache_key() != cache_key(cache_version=CACHE_VERSION + 1)  # the version is part of every key
    with pytest.raises(TypeError, match="cannot encode object"):
        cache_key(thing=object())


def test_file_digest_streams_and_tracks_changes(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"a" * 3_000_000)
    first = file_digest(path)
    assert first == file_digest(str(path)) and len(first) == 64
    before = keys_mod._digest.cache_info().hits
    file_digest(path)
    assert keys_mod._digest.cache_info().hits == before + 1  # memoised: not hashed again
    path.write_bytes(b"b" * 3_000_000)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # make sure mtime moves on coarse clocks
    assert file_digest(path) != first


def test_default_root_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("WISEFT_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" and DiskCache().root == tmp_path / "c"
    monkeypatch.delenv("WISEFT_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "wiseft-explorer"


def test_round_trip_and_counters(tmp_path):
    cache = DiskCache(tmp_path)
    key = cache_key(kind="logits", alpha=0.5)
    assert cache.get(key) is None and (cache.hits, cache.misses) == (0, 1)
    base = torch.randn(4, 4)
    data = {**tensors(), "view_a": base[:2], "view_b": base[2:]}  # shared storage is stored safely
    cache.put(key, data, {"alpha": 0.5, "set": "Sketch"})
    got, meta = cache.get_entry(key)
    assert same(got, data) and meta == {"alpha": 0.5, "set": "Sketch"}
    assert (cache.hits, cache.misses, cache.writes) == (1, 1, 1) and key in cache
    assert leftovers(tmp_path) == []
    cache.reset_stats()
    assert same(cache.get(key), data) and (cache.hits, cache.misses) == (1, 0)
    assert cache.clear() == 1 and cache.get(key) is None


def test_invalid_key_refused(tmp_path):
    with pytest.raises(ValueError, match="invalid cache key"):
        DiskCache(tmp_path).get("../escape")


def test_atomic_writes(tmp_path):
    target = tmp_path / "sub" / "results.json"
    atomic_write_text(target, json.dumps({"a": 1}))
    assert json.loads(target.read_text()) == {"a": 1}
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and leftovers(target.parent) == []


def test_atomic_write_failure_leaves_old_file(tmp_path):
    target = tmp_path / "export.csv"
    target.write_text("old complete content")
    with pytest.raises(RuntimeError, match="writer failed"), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old complete content" and leftovers(tmp_path) == []
    fresh = tmp_path / "never.csv"
    with pytest.raises(RuntimeError), atomic_path(fresh) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("writer failed")
    assert not fresh.exists() and leftovers(tmp_path) == []
    with pytest.raises(FileNotFoundError, match="nothing was written"), atomic_path(fresh):
        pass


def corrupt_and_recover(cache: DiskCache, key: str) -> None:
    """The damaged entry is reported, removed and recomputed; the next put/get works."""
    misses = cache.misses
    with pytest.warns(CacheWarning) as record:
        assert cache.get(key) is None
    assert cache.misses == misses + 1 and not cache.path_for(key).exists()
    assert key[:12] in str(record[0].message) and "recomputed" in str(record[0].message)
    cache.put(key, tensors(1), {})
    assert same(cache.get(key), tensors(1))


def test_truncated_entry_recomputed(tmp_path):
    cache = DiskCache(tmp_path)
    key = cache_key(n=1)
    path = cache.put(key, tensors(), {})
    data = path.read_bytes()
    for cut in (len(data) - 5, 20, 4):
        path.write_bytes(data[:cut])
        corrupt_and_recover(cache, key)
        path.write_bytes(data)


def test_wrong_version_entry_recomputed(tmp_path):
    cache = DiskCache(tmp_path)
    key = cache_key(n=2)
    data = tensors()
    save_file(data, str(cache.path_for(key)), metadata={
        "wiseft_cache_version": str(CACHE_VERSION - 1), "wiseft_checksum": tensor_checksum(data)})
    with pytest.warns(CacheWarning, match=f"expected {CACHE_VERSION}"):
        assert cache.get(key) is None
    save_file(data, str(cache.path_for(key)))  # a foreign safetensors file without our metadata
    corrupt_and_recover(cache, key)


def test_checksum_mismatch_recomputed(tmp_path):
    cache = DiskCache(tmp_path)
    key = cache_key(n=3)
    path = cache.put(key, {"x": torch.zeros(256)}, {})
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x40  # flip one bit in the last tensor byte: still loads, wrong content
    path.write_bytes(bytes(raw))
    with pytest.warns(CacheWarning, match="checksum mismatch"):
        assert cache.get(key) is None
    assert not path.exists()
    cache.put(key, tensors(), {})
    assert same(cache.get(key), tensors())


CHILD = """
import os, sys, time
mode, target = sys.argv[1:3]
if mode == "put":
    import torch
    from wiseft_explorer.store.cache import DiskCache
    def slow_fsync(fd):  # the temp file is complete; stall right before the rename
        print("WRITING", flush=True)
        time.sleep(60)
    os.fsync = slow_fsync
    path = __import__("pathlib").Path(target)
    DiskCache(path.parent).put(path.stem, {"x": torch.full((1 << 21,), 7.0)}, {"writer": "child"})
else:  # atomic.py alone (no package import, so no torch): a fast child that stalls mid-write
    import importlib.util
    spec = importlib.util.spec_from_file_location("atomic", sys.argv[3])
    atomic = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(atomic)
    atomic_path = atomic.atomic_path
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        fh.write(b"\\0" * (1 << 20))
        fh.flush()
        print("WRITING", flush=True)
        time.sleep(60)
print("FINISHED", flush=True)
"""


# Killed after the whole entry is in the temp file (put, with an old entry present) and halfway through the
# bytes (raw, with and without an old entry); only the put case pays for importing torch in the child.
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
@pytest.mark.parametrize("mode, had_old", [("put", True), ("raw", True), ("raw", False)])
def test_writer_killed_mid_write(tmp_path, mode, had_old):
    cache = DiskCache(tmp_path)
    key = cache_key(test="sigkill", mode=mode)
    if had_old:
        cache.put(key, tensors(), {"writer": "parent"})
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, mode, str(cache.path_for(key)), atomic_mod.__file__],
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "WRITING"
        assert leftovers(tmp_path), "the child should be writing a temporary file"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
    # The entry is either absent or the old complete one: never the child's partial write, never a warning.
    got = cache.get_entry(key)
    if had_old:
        assert same(got[0], tensors()) and got[1] == {"writer": "parent"}
    else:
        assert got is None and not cache.path_for(key).exists()
    cache.put(key, tensors(2), {"writer": "rerun"})
    assert same(cache.get(key), tensors(2))
    stale = leftovers(tmp_path)
    assert len(stale) == 1  # the killed writer's temp file: ignored by get/put, removed once stale
    assert remove_stale_temps(tmp_path, older_than_s=0) == 1 and leftovers(tmp_path) == []
