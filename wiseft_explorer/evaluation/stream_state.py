"""What a stream holds and where it is kept: each set's per-image predictions in its fair order, saved for a resume.

Because a set streams in its fair order, what has been done at any moment is a prefix of it: a fair sample, and a
single integer per set to save and resume from.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.class_views import ClassView
from ..data.sets import EvalSet
from ..store.cache import DiskCache

SAVE_SECONDS = 30.0  # the partial state is saved at least this often (WISEFT_SAVE_SECONDS overrides it)
PROBS_MAX_CLASSES = 100  # keep every class probability for small label sets (the gallery's alpha charts)
PROBS_MAX_VALUES = 4_000_000  # ... and only while a set's images x alphas x classes stay this small (8 MB fp16)


def save_seconds() -> float:
    """How often the partial state is saved: $WISEFT_SAVE_SECONDS, else every 30 s."""
    return float(os.environ.get("WISEFT_SAVE_SECONDS", SAVE_SECONDS))


@dataclass
class SetStream:
    """One set's per-image results while it streams, in its fair order (positions), for its alphas (columns).

    A stream holds the whole fair order, or with `positions` one process's part of it (a distributed sweep):
    its rows are then those positions of the fair order, in the order it streams them.
    """

    ev: EvalSet
    alphas: list[float]
    # (N, A) int16 or int32 class indices; -1 where not evaluated yet or not decodable. With `ensemble`, A more
    # columns follow: the output-space ensemble's predictions, argmax((1 - alpha) logits_0 + alpha logits_1);
    # then A for each of `views`: the predictions as that shift scores them (the ID set on a shift's classes).
    pred: torch.Tensor
    probs: torch.Tensor | None  # (A, N, C) float16 class probabilities when small enough, else None
    done: int = 0  # rows processed (evaluated or failed)
    failed: dict[int, str] = field(default_factory=dict)  # row -> why it could not be decoded
    positions: np.ndarray | None = None  # (N,) fair-order positions of the rows; None: all of them, in order
    ensemble: bool = False  # the output-space columns are kept (the alphas include both endpoints)
    views: tuple[ClassView, ...] = ()

    @classmethod
    def empty(cls, ev: EvalSet, alphas: Sequence[float], num_classes: int,
              positions: np.ndarray | None = None, views: tuple[ClassView, ...] = ()) -> SetStream:
        """Nothing evaluated yet (of the whole set, or of the given positions of its fair order)."""
        rows = len(ev) if positions is None else len(positions)
        dtype = torch.int16 if num_classes < 2 ** 15 else torch.int32
        # The probabilities' budget counts the whole set: every process of a distributed sweep decides alike.
        keep = num_classes <= PROBS_MAX_CLASSES and len(ev) * len(alphas) * num_classes <= PROBS_MAX_VALUES
        # The output-space ensemble comes almost free once both endpoints' logits of a batch are at hand.
        ensemble = 0.0 in alphas and 1.0 in alphas
        columns = len(alphas) * ((2 if ensemble else 1) + len(views))
        return cls(ev, list(alphas), torch.full((rows, columns), -1, dtype=dtype),
                   torch.zeros(len(alphas), rows, num_classes, dtype=torch.float16) if keep else None,
                   positions=positions, ensemble=ensemble, views=views)

    def view_column(self, k: int, column: int) -> int:
        """Where view k's prediction at the alpha of `column` is kept."""
        return len(self.alphas) * ((2 if self.ensemble else 1) + k) + column

    @property
    def size(self) -> int:
        """Rows of this stream (the set's images, or this process's part of them)."""
        return len(self.pred)

    @property
    def indices(self) -> np.ndarray:
        """The set index of every row, in streaming order."""
        return self.ev.order if self.positions is None else self.ev.order[self.positions]

    def evaluated(self) -> torch.Tensor:
        """Positions (in fair order) evaluated so far: the processed prefix minus undecodable images."""
        positions = torch.arange(self.done)
        if self.failed:
            positions = positions[~torch.isin(positions, torch.tensor(sorted(self.failed)))]
        return positions


class StateStore:
    """Where a stream's partial state is saved (atomically, in the disk cache) and found again after a crash."""

    def __init__(self, cache: DiskCache, key: str, every: float | None = None, keep_final: bool = False) -> None:
        self.cache, self.key = cache, key
        self.every = save_seconds() if every is None else every
        # A distributed sweep's ranks keep their finished parts until rank 0 has written the gathered results, so
        # that a failure while gathering costs no streaming.
        self.keep_final = keep_final

    def save(self, streams: dict[str, SetStream], batches_done: int) -> None:
        """Write what has been done so far (the processed prefix of every set)."""
        tensors, failed = {}, {}
        for i, (name, stream) in enumerate(streams.items()):
            tensors[f"pred{i}"] = stream.pred[:stream.done]
            if stream.probs is not None:
                tensors[f"probs{i}"] = stream.probs[:, :stream.done]
            failed[name] = {str(k): v for k, v in stream.failed.items()}
        meta = {"batches_done": batches_done, "sets": list(streams), "failed": failed,
                "done": [s.done for s in streams.values()], "sizes": [s.size for s in streams.values()]}
        self.cache.put(self.key, tensors, meta)

    def restore(self, streams: dict[str, SetStream]) -> int:
        """Fill the streams from a saved state; returns the batches already done (0 when there is none)."""
        entry = self.cache.get_entry(self.key) if self.key in self.cache else None  # a fresh start is no cache miss
        if entry is None:
            return 0
        tensors, meta = entry
        if meta.get("sets") != list(streams) or meta.get("sizes") != [s.size for s in streams.values()]:
            return 0  # not this stream's layout: start afresh (the key makes this unexpected)
        for i, (name, stream) in enumerate(streams.items()):
            done = int(meta["done"][i])
            stream.pred[:done] = tensors[f"pred{i}"]
            if stream.probs is not None and f"probs{i}" in tensors:
                stream.probs[:, :done] = tensors[f"probs{i}"]
            stream.done = done
            stream.failed = {int(k): v for k, v in meta["failed"][name].items()}
        return int(meta["batches_done"])

    def clear(self) -> None:
        """Forget the partial state (the stream finished and its results are stored)."""
        self.cache.discard(self.key)
