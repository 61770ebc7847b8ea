"""open_clip pretrained weights: is a tag's checkpoint on this machine, can it be fetched, and honest logging."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import open_clip

HUB_HOST = ("huggingface.co", 443)
PROBE_SECONDS = 2.0
_DEFAULT_HUB_FILE = "open_clip_pytorch_model.bin"


class TagUnavailable(RuntimeError):
    """A pretrained tag that cannot be used here (unknown, or not cached on an offline machine)."""


def offline() -> bool:
    """True when the Hugging Face Hub cannot be reached: HF_HUB_OFFLINE is set, or a 2-second connection fails."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return True
    try:
        with socket.create_connection(HUB_HOST, timeout=PROBE_SECONDS):
            return False
    except OSError:  # no DNS, no route, refused: a download would fail after retries, 50 s later
        return True


def _hub_cached(repo: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    stem = filename.rsplit(".", 1)[0]
    # open_clip prefers a .safetensors twin of the file when the repository has one.
    candidates = [f"{stem}.safetensors", filename] if not filename.endswith(".safetensors") else [filename]
    return any(isinstance(try_to_load_from_cache(repo, name), str) for name in candidates)


def tag_cached(name: str, tag: str) -> bool:
    """Whether the checkpoint of an open_clip tag is in the local caches (so loading it needs no network)."""
    cfg = open_clip.get_pretrained_cfg(name, tag)
    if cfg.get("file"):
        return Path(cfg["file"]).is_file()
    hub = cfg.get("hf_hub", "")
    if hub:
        repo, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
        return _hub_cached(repo, filename or _DEFAULT_HUB_FILE)
    url = cfg.get("url", "")
    return bool(url) and (Path("~/.cache/clip").expanduser() / os.path.basename(url)).is_file()


def check_tag_available(name: str, tag: str) -> None:
    """Raise TagUnavailable with one whole sentence when `tag` is unknown, or not cached on an offline machine."""
    known = open_clip.list_pretrained_tags_by_model(name)
    if tag not in known:
        shown = ", ".join(known) if known else "none"
        raise TagUnavailable(f"'{tag}' is not an open_clip pretrained tag of {name} (its tags: {shown}); use one "
                             "of those, or set zeroshot.pretrained to a local .safetensors file")
    if not tag_cached(name, tag) and offline():
        raise TagUnavailable(f"the weights of open_clip tag '{tag}' for {name} are not on this machine and it is "
                             "offline, so they cannot be downloaded; fetch them on a machine with internet (open_clip "
                             "stores them in the Hugging Face cache) or set zeroshot.pretrained to a local "
                             ".safetensors file")


# Where a failed fetch comes from: open_clip re-raises a download failure as a bare RuntimeError, leaving the
# network or Hub error as its context; these packages' errors (and any OSError) mean the weights did not arrive.
_FETCH_PACKAGES = ("huggingface_hub", "httpx", "requests", "urllib3")
_FETCH_MESSAGES = ("Failed to download", "SHA256 checksum")  # open_clip's own words for a failed or bad download


def is_download_failure(err: BaseException) -> bool:
    """Whether an error from open_clip's model creation means the pretrained weights could not be fetched."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) or type(seen).__module__.split(".")[0] in _FETCH_PACKAGES:
            return True
        if isinstance(seen, RuntimeError) and any(words in str(seen) for words in _FETCH_MESSAGES):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class _NotRandom(logging.Filter):
    """Drops open_clip's 'No pretrained weights loaded ... initialized randomly' when we load the weights next."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded for model")


@contextlib.contextmanager
def weights_follow_creation() -> Iterator[None]:
    """While open_clip builds a model whose weights we load ourselves right after: no false 'random' warning."""
    root, only = logging.getLogger(), _NotRandom()
    root.addFilter(only)  # exactly that record, from the root logger open_clip uses; all other logging stays
    try:
        yield
    finally:
        root.removeFilter(only)
