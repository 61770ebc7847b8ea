"""Fine-tuning across the ranks of a torch.distributed job: each rank trains on its share of every global batch.

The global batches are those of a single-process run with the same seed (the same sampler, drawn from the same
generator); each rank takes a contiguous 1/world of every one, DistributedDataParallel averages the gradients, so
a step sees the same images and takes (up to the order of float additions) the same update as in one process, with
or without micro-batches. With BatchNorm statistics updating (bn='train'), each rank normalises by its own share's
batch statistics and rank 0's running statistics are saved, as the paper's DataParallel does with each GPU's share
and GPU 0's: then the update is not one process's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, Sampler

from ..core.distributed import DistributedError, Group, all_reduce_sum, broadcast_bytes, gather_bytes


class RankBatches(Sampler[list[int]]):
    """This rank's contiguous share of every batch of a single-process batch sampler."""

    def __init__(self, batches: BatchSampler, group: Group) -> None:
        if batches.batch_size % group.world_size:
            raise ValueError(f"--batch-size {batches.batch_size} is the global batch: it must be a multiple of the "
                             f"{group.world_size} processes")
        self.batches, self.group = batches, group
        self.share = batches.batch_size // group.world_size

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        start = self.group.rank * self.share
        for batch in self.batches:
            # A last partial batch (no drop_last) is split as evenly as it goes; a rank may get none of it.
            share = -(-len(batch) // self.group.world_size)
            yield batch[start:start + self.share] if len(batch) == self.batches.batch_size else \
                batch[self.group.rank * share:(self.group.rank + 1) * share]


def data_parallel(model: nn.Module, group: Group) -> nn.Module:
    """The model wrapped in DistributedDataParallel (gradients averaged over the ranks), or as is in one process."""
    if not group.distributed:
        return model
    ids = [group.local_rank] if group.backend == "nccl" else None
    # Buffers are not broadcast: frozen BatchNorm statistics are the same on every rank, and updated ones are
    # rank 0's (those it saves), as GPU 0's are under the paper's DataParallel.
    return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


def gather_with_grad(group: Group, tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's rows of `tensor`, concatenated in rank order on every rank (shares may differ in length), with
    the gradient flowing back to each rank's own rows (FLYP's loss over the global batch); as is in one process."""
    if not group.distributed:
        return tensor
    import torch.distributed as dist
    from torch.distributed.nn.functional import all_gather

    lengths = [int(n) for n in all_reduce_sum(group, torch.nn.functional.one_hot(
        torch.tensor(group.rank), group.world_size) * len(tensor)).tolist()]
    padded = torch.cat([tensor, tensor.new_zeros((max(lengths) - len(tensor), *tensor.shape[1:]))])
    if tensor.is_floating_point():
        parts = list(all_gather(padded))
    else:  # labels: nothing to differentiate
        parts = [torch.empty_like(padded) for _ in lengths]
        dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, lengths, strict=True)])


def reduce_training(group: Group, losses: list[float], right: int, seen: int) -> tuple[list[float], int, int]:
    """Every step's loss averaged over the ranks, and the training accuracy's counts summed (for the report)."""
    if not group.distributed:
        return losses, right, seen
    summed = all_reduce_sum(group, torch.tensor([*losses, float(right), float(seen)], dtype=torch.float64))
    return (summed[:-2] / group.world_size).tolist(), int(summed[-2]), int(summed[-1])


def rank_indices(n: int, group: Group) -> list[int]:
    """The items of an n-item pass (features) this rank computes: every world-th one, from its rank."""
    return list(range(group.rank, n, group.world_size))


def gather_features(group: Group, indices: Sequence[int], feats: torch.Tensor, labels: torch.Tensor,
                    failed: set[int]) -> tuple[torch.Tensor, torch.Tensor, set[int]]:
    """Every rank's features put together in item order, on every rank (the head then trains alike everywhere)."""
    loaded = torch.tensor([i for i in indices if i not in failed], dtype=torch.int64)
    mine = save_tensors({"index": loaded, "feats": feats.contiguous(), "labels": labels,
                         "failed": torch.tensor(sorted(failed), dtype=torch.int64)})
    parts = gather_bytes(group, mine)
    whole = None
    if parts is not None:  # rank 0, the one gather_bytes hands every rank's part
        pieces = [piece for piece in map(load_tensors, parts) if len(piece["index"])]  # a rank may have had none
        index = torch.cat([p["index"] for p in pieces])
        order = index.argsort()
        failed_all = torch.cat([load_tensors(p)["failed"] for p in parts]).sort().values
        whole = save_tensors({"feats": torch.cat([p["feats"] for p in pieces])[order].contiguous(),
                              "labels": torch.cat([p["labels"] for p in pieces])[order].contiguous(),
                              "failed": failed_all})
    got = load_tensors(broadcast_bytes(group, whole))
    if len(got["feats"]) != len(got["labels"]):
        raise DistributedError("the gathered features and labels differ in length")
    return got["feats"], got["labels"], set(got["failed"].tolist())
