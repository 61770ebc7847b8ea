"""Fair order: a seeded permutation of a set, stratified by class, so that every prefix is a fair sample of it."""

from __future__ import annotations

import numpy as np

DEFAULT_SEED = 0


def fair_order(labels: np.ndarray, seed: int = DEFAULT_SEED) -> np.ndarray:
    """A permutation of range(N): one image of every class first, then the classes in proportion, seeded.

    Within a class the images are shuffled; the k-th image of a class with m images gets the position key
    (k + u) / m, with one random phase u per class, so that after any prefix each class has been drawn about in
    proportion to its size (within about one image). The first image of every class comes
    before all others, so that a prefix at least as long as the number of classes covers every class.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    keys = np.empty(len(labels), dtype=np.float64)
    by_class = np.argsort(labels, kind="stable")
    classes, starts, counts = np.unique(labels[by_class], return_index=True, return_counts=True)
    for start, count in zip(starts, counts, strict=True):
        members = by_class[start:start + count].copy()
        rng.shuffle(members)
        phase = rng.random()
        keys[members] = (np.arange(count) + phase) / count
        keys[members[0]] = phase - 1.0  # negative: every class's first image sorts before every other image
    tiebreak = rng.random(len(labels))
    return np.lexsort((tiebreak, keys)) if len(classes) else np.arange(0)


def fair_sample(labels: np.ndarray, limit: int | None, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Indices (sorted) of a seeded sample of `limit` images that covers the classes in proportion (all if None)."""
    if limit is None or limit >= len(labels):
        return np.arange(len(labels))
    return np.sort(fair_order(labels, seed)[:limit])


Slice = tuple[int, int, int]  # (set number, start, stop) in that set's fair order


def shard_plan(plan: list[Slice], sets: int, rank: int, world: int) -> tuple[list[Slice], list[np.ndarray], int]:
    """One process's part of a batch plan, for `world` processes streaming it together.

    Process `rank` takes every world-th slice of the plan, starting at its rank: the parts are disjoint and cover
    every position exactly once, with no padding duplicates (DistributedSampler's default repeats images to make
    the parts equal). Whole slices, not single images, so that every batch holds the same images as in one
    process and gives the same per-image results. Returns the part as slices of the process's own positions, the
    fair-order positions each of its streams holds (one array per set, in streaming order), and how many of its
    slices belong to the plan's first round (one slice per non-empty set).
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in a world of {world} processes")
    first_round = len({number for number, _, _ in plan})  # batch_plan starts with one slice of every non-empty set
    taken: list[list[np.ndarray]] = [[] for _ in range(sets)]
    held = [0] * sets
    local: list[Slice] = []
    first = 0
    for i in range(rank, len(plan), world):
        number, start, stop = plan[i]
        local.append((number, held[number], held[number] + stop - start))
        taken[number].append(np.arange(start, stop))
        held[number] += stop - start
        first += i < first_round
    positions = [np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64) for parts in taken]
    return local, positions, first
