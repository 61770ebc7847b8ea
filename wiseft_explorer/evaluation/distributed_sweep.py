"""The alpha sweep across the ranks of a torch.distributed job: disjoint parts streamed, gathered and written on rank 0.

Every rank streams its part of the batch plan (sampling.shard_plan: whole batches, every world-th one, no image
twice), saving its own resumable state. Then the per-(set, alpha) counts are all-reduced, the per-image results
are gathered on rank 0, which puts them back into each set's fair order, checks them against the counts and writes
the cache entries and curves exactly as a single-process sweep does: the numbers are the same, image for image.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from ..core.distributed import (
    DistributedError,
    Group,
    all_reduce_sum,
    broadcast_bytes,
    gather_bytes,
    provenance,
)
from ..data.sampling import shard_plan
from ..data.stream import batch_plan
from ..results.curves import ALPHA_GRID
from ..store.cache import DiskCache
from .engine import FIRST_BATCH, StreamProgress
from .runtime import ExperimentRuntime
from .stream_state import SetStream
from .sweep import (
    SweepResult,
    finish_sweep,
    plan_sweep,
    report_failed,
    state_store,
    store_streams,
    stream_sets,
)

RankProgress = Callable[[StreamProgress], None]  # this rank's part: images done of its part
_OK = b"ok"


def run_sweep_distributed(runtime: ExperimentRuntime, group: Group, alphas: Sequence[float] = ALPHA_GRID,
                          cache: DiskCache | None = None, on_progress: RankProgress | None = None,
                          max_images: int | None = None) -> SweepResult | None:
    """The sweep of every set, computed by every rank of `group`; the result on rank 0, None on the others."""
    cache = cache or DiskCache(runtime.experiment.cache_dir)
    result, keys, needed = plan_sweep(runtime, alphas, None, cache, max_images) if group.is_root else (None, {}, {})
    # Rank 0 decides what is left to do: on node-local disks the other ranks cannot see its cache.
    needed = json.loads(broadcast_bytes(group, json.dumps(needed).encode() if group.is_root else None))
    if needed:
        shard = (group.rank, group.world_size)
        store = state_store(runtime, needed, cache, max_images, shard)
        store.keep_final = True
        hook = (lambda progress, _streams: on_progress(progress)) if on_progress is not None else None
        streams = stream_sets(runtime, needed, None, store, max_images, hook, shard=shard)
        totals = all_reduce_sum(group, counts(streams))
        parts = gather_bytes(group, pack(streams))
        error = None
        if group.is_root:
            try:
                assert result is not None and parts is not None  # rank 0 planned the sweep and gathered the parts
                whole = assemble(runtime, needed, parts, group.world_size, max_images)
                if not torch.equal(counts(whole), totals):
                    raise DistributedError("the gathered per-image results disagree with the all-reduced counts")
                report_failed(runtime, whole)
                store_streams(result, whole, keys, cache, provenance(group, runtime.device))
                finish_sweep(runtime, result, None, max_images)
            except Exception as err:  # every rank must hear the outcome, or the others would wait for the timeout
                error = err
        outcome = broadcast_bytes(group, _OK if error is None else f"{type(error).__name__}: {error}".encode())
        if error is not None:
            raise error
        if outcome != _OK:
            raise DistributedError(f"rank 0 could not write the results ({outcome.decode()}); the saved states "
                                   "are kept, so the same command resumes")
        store.clear()  # rank 0 has written every set: this rank's part is no longer needed
    elif result is not None:  # rank 0, the only one that planned the sweep
        finish_sweep(runtime, result, None, max_images)
    return result if group.is_root else None


def counts(streams: dict[str, SetStream]) -> torch.Tensor:
    """(sets, alphas + 1) int64: images right at each alpha, then images evaluated, per set."""
    rows = []
    for stream in streams.values():
        done = stream.pred[:stream.done].long()
        labels = stream.ev.labels[torch.from_numpy(stream.indices[:stream.done])].unsqueeze(1)
        right = (done == labels).sum(dim=0)  # undecodable images hold -1 and are never right
        rows.append(torch.cat([right, torch.tensor([stream.done - len(stream.failed)])]))
    return torch.stack(rows).long()


def pack(streams: dict[str, SetStream]) -> bytes:
    """This rank's finished rows of every set (predictions, probabilities, failures) as safetensors bytes."""
    tensors: dict[str, torch.Tensor] = {}
    for i, stream in enumerate(streams.values()):
        tensors[f"pred{i}"] = stream.pred[:stream.done].contiguous()
        if stream.probs is not None:
            tensors[f"probs{i}"] = stream.probs[:, :stream.done].contiguous()
    meta = {"sets": list(streams), "done": [s.done for s in streams.values()],
            "failed": [{str(k): v for k, v in s.failed.items()} for s in streams.values()]}
    tensors["meta"] = torch.frombuffer(bytearray(json.dumps(meta).encode()), dtype=torch.uint8)
    return save_tensors(tensors)


def assemble(runtime: ExperimentRuntime, needed: dict[str, list[float]], parts: Sequence[bytes], world: int,
             max_images: int | None) -> dict[str, SetStream]:
    """Every set's whole stream (fair order) from the ranks' parts, each row put back at its position."""
    exp = runtime.experiment
    evs = [runtime.eval_set(name) for name in needed]
    sizes = [min(len(ev), max_images) if max_images else len(ev) for ev in evs]
    plan = batch_plan(sizes, exp.batch_size, FIRST_BATCH)
    whole = {name: SetStream.empty(ev, needed[name], len(exp.classnames), views=runtime.class_views(name))
             for name, ev in zip(needed, evs, strict=True)}
    for rank, payload in enumerate(parts):
        tensors = load_tensors(payload)
        meta = json.loads(tensors.pop("meta").numpy().tobytes())
        if meta["sets"] != list(needed):
            raise DistributedError(f"rank {rank} streamed the sets {meta['sets']}, rank 0 {list(needed)}")
        _, positions, _ = shard_plan(plan, len(evs), rank, world)
        for i, stream in enumerate(whole.values()):
            rows = torch.from_numpy(positions[i])
            if meta["done"][i] != len(rows):
                raise DistributedError(f"rank {rank} finished {meta['done'][i]} of its {len(rows)} images of "
                                       f"{evs[i].name}")
            stream.pred[rows] = tensors[f"pred{i}"]
            if stream.probs is not None:
                stream.probs[:, rows] = tensors[f"probs{i}"]
            stream.failed.update({int(positions[i][int(row)]): why for row, why in meta["failed"][i].items()})
    for stream, size in zip(whole.values(), sizes, strict=True):
        stream.done = size  # the parts cover the first `size` positions of the fair order exactly once
        stream.failed = dict(sorted(stream.failed.items()))
    return whole
