"""What is kept on disk: content-hash keys, atomic writes and the cache of heads and sweeps.

Public names load lazily on first access (see `wiseft_explorer._lazy`)."""

from .._lazy import lazy_exports

_EXPORTS = {
    "atomic": ("atomic_path", "atomic_write_bytes", "atomic_write_text", "remove_stale_temps"),
    "cache": ("CacheWarning", "DiskCache", "tensor_checksum"),
    "keys": (
        "CACHE_VERSION", "cache_key", "default_cache_dir", "experiment_fingerprint", "file_digest",
        "files_version", "fingerprint_difference", "hub_revision", "set_fingerprint", "software_versions",
        "zeroshot_identity"
    ),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
