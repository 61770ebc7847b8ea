"""The feature cache: an image tower's features of a set's images, in blocks of its fair order, on disk.

When every theta_alpha shares its image tower (a linear classifier, a probe), a sweep needs each image's features
once; kept here, a second head over the same data (another seed, another recipe) needs none at all. A set's
features are cut into blocks of BLOCK positions of its fair order, one cache entry each, so that they are never
held whole: a stream reads or fills one block per set at a time (4 MB at 512 dimensions), however large the set.
Features are kept in fp32, the precision the head sees: fp16 would round them and could flip a near tie.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from .cache import DiskCache
from .keys import cache_key, software_versions

BLOCK = 2048  # fair-order positions per cache entry (the last block of a set may be shorter)


def features_key(identity: Mapping[str, str], block: int) -> str:
    """The key of one block: the tower's digest, the set, the preprocessing and precision (in `identity`)."""
    return cache_key(kind="features", block=block, size=BLOCK, versions=software_versions(), **identity)


@dataclass
class Block:
    """One block of features: rows in fair order, and the rows whose image could not be decoded (with why)."""

    features: torch.Tensor  # (rows, D) float32; zeros where failed
    failed: dict[int, str]  # row in the block -> reason


@dataclass
class _Filling:
    features: torch.Tensor
    seen: torch.Tensor  # (rows,) bool
    failed: dict[int, str] = field(default_factory=dict)


class SetFeatures:
    """The feature blocks (`dim` wide) of one set of `size` images in the cache: read one at a time, filled as a stream goes."""

    def __init__(self, cache: DiskCache, identity: Mapping[str, str], size: int, dim: int) -> None:
        self.cache, self.identity, self.size, self.dim = cache, dict(identity), size, dim
        self._read: tuple[int, Block] | None = None  # the block read last (a stream reads them in order)
        self._filling: dict[int, _Filling] = {}
        self.written = 0  # blocks written by this object

    def _rows(self, block: int) -> int:
        return min(BLOCK, self.size - block * BLOCK)

    def has(self, positions: torch.Tensor) -> bool:
        """Whether every fair-order position given lies in a block that is cached (nothing is read)."""
        return all(features_key(self.identity, int(b)) in self.cache for b in torch.unique(positions // BLOCK))

    def block(self, number: int) -> Block | None:
        """One block from the cache (None: not there, or unusable), the last one read kept at hand."""
        if self._read is not None and self._read[0] == number:
            return self._read[1]
        entry = self.cache.get_entry(features_key(self.identity, number))
        if entry is None:
            return None
        block = Block(entry[0]["features"], {int(k): v for k, v in entry[1]["failed"].items()})
        self._read = (number, block)
        return block

    def read(self, positions: torch.Tensor) -> tuple[torch.Tensor, list[int], list[tuple[int, str]]] | None:
        """Features of the decodable positions (in the order given), those positions, and the failed ones; None if
        any block is missing."""
        rows, kept, failed = [], [], []
        for position in positions.tolist():
            block = self.block(position // BLOCK)
            if block is None:
                return None
            row = position % BLOCK
            if row in block.failed:
                failed.append((position, block.failed[row]))
            else:
                rows.append(block.features[row])
                kept.append(position)
        return (torch.stack(rows) if rows else None), kept, failed

    def fill(self, positions: torch.Tensor, features: torch.Tensor | None,
             failed: list[tuple[int, str]]) -> None:
        """Record a batch's features (rows of `features` for `positions`) and failures; write each block that is
        complete (a block whose rows came partly before a restart, or from another process, stays unwritten)."""
        touched = set()
        for i, position in enumerate(positions.tolist()):
            touched.add(self._put(position, None if features is None else features[i], None))
        for position, reason in failed:
            touched.add(self._put(position, None, reason))
        for number in touched:
            filling = self._filling[number]
            if bool(filling.seen.all()):
                del self._filling[number]
                self.cache.put(features_key(self.identity, number), {"features": filling.features},
                               {"failed": {str(k): v for k, v in filling.failed.items()}})
                self.written += 1

    def _put(self, position: int, row: torch.Tensor | None, reason: str | None) -> int:
        number, at = divmod(position, BLOCK)
        if number not in self._filling:
            rows = self._rows(number)
            self._filling[number] = _Filling(torch.zeros(rows, self.dim), torch.zeros(rows, dtype=torch.bool))
        filling = self._filling[number]
        if row is not None:
            filling.features[at] = row.float().cpu()
        else:
            filling.failed[at] = reason or "not decodable"
        filling.seen[at] = True
        return number
