"""The training data's loader: in-memory tensors or a dataset, read in seeded batches, skipping unloadable images.

With a seed it yields the shuffled training batches (each rank its share of every global batch under torchrun);
without one, the linear mode's single feature pass. Images that fail to load are counted, not trained on.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, TensorDataset

from ..core.distributed import Group
from ..data.stream import collate_loaded, worker_context, worker_init
from .distributed import RankBatches

# In-memory (images (N,3,H,W), labels (N,)) tensors, or a Dataset of (image, label) items, where an item is None
# when its image could not be loaded (stream.LabelledImages over a folder).
TrainData: TypeAlias = Dataset | tuple[torch.Tensor, torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor]  # images (B,3,H,W) or features (B,D), labels (B,)


@dataclass(frozen=True)
class LoaderOptions:
    """How training images are read, which is not part of the recipe: the same seed trains the same weights."""

    workers: int = 0  # decoding worker processes; 0 decodes in the main process
    context: multiprocessing.context.BaseContext | None = None  # start method; None: stream.worker_context()
    prefetch: int = 2  # batches each worker decodes ahead

    def __post_init__(self) -> None:
        if self.workers < 0 or self.prefetch < 1:
            raise ValueError(f"workers must be >= 0 and prefetch >= 1, not {self.workers} and {self.prefetch}")


def as_dataset(data: TrainData) -> Dataset:
    """The data as a Dataset of (image, label) items: in-memory tensors are wrapped."""
    if isinstance(data, tuple):
        images, labels = data
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        return TensorDataset(images, labels.long())
    return data


class _Numbered(Dataset):
    """Items of a dataset with their indices, so that a batch can say which of its images failed to load."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.dataset[index]


def collate_numbered(items: list[tuple[int, Any]]) -> tuple[Batch | None, list[int]]:
    """A batch of the items that loaded (None when none did) and the indices of those that did not."""
    failed = [index for index, item in items if item is None]
    return collate_loaded([item for _, item in items]), failed


def training_loader(data: TrainData, batch_size: int, device: torch.device | str = "cpu",
                    options: LoaderOptions | None = None, seed: int | None = None, group: Group | None = None,
                    indices: list[int] | None = None) -> DataLoader:
    """A DataLoader of (Batch or None, failed indices): a seeded training pass, or with no seed the feature pass.

    With a seed, every epoch is shuffled by a generator seeded with it and the last partial batch is dropped;
    without one, every item comes once, in order. Workers decode ahead in processes from a forkserver (never plain
    fork: the Streamlit server is multi-threaded); nothing holds the set, only the batches in flight (about
    workers x prefetch). Workers are not persistent, so every epoch's iterator draws from the generator exactly
    as with workers=0: the same seed gives the same order, whatever the workers. With a distributed `group`, each
    rank reads its share of every one of those batches (`batch_size` is the global batch); `indices` limits the
    feature pass to some items.
    """
    options = options or LoaderOptions()
    workers, train = options.workers, seed is not None
    context = (options.context or worker_context()) if workers else None
    dataset = _Numbered(as_dataset(data))
    generator = torch.Generator().manual_seed(seed) if train else None
    drop_last = train and len(dataset) > batch_size
    sizes: dict[str, Any] = {"batch_size": batch_size, "shuffle": train, "drop_last": drop_last, "sampler": indices}
    if train and group is not None and group.distributed:
        # The very sampler a single process would build, drawing from the same generator: the same global batches.
        sizes = {"batch_sampler": RankBatches(BatchSampler(RandomSampler(dataset, generator=generator), batch_size,
                                                           drop_last), group)}
    return DataLoader(dataset, **sizes, generator=generator, collate_fn=collate_numbered,
                      num_workers=workers, multiprocessing_context=context,
                      prefetch_factor=options.prefetch if workers else None, worker_init_fn=worker_init() if workers else None,
                      pin_memory=torch.device(device).type == "cuda")  # pinned: copies to the GPU overlap compute


def loaded_batches(loader: DataLoader, failed: set[int]) -> Iterator[Batch]:
    """The loader's batches that have images; the indices of images that failed to load are added to `failed`."""
    for batch, bad in loader:
        failed.update(bad)
        if batch is not None:  # a batch whose every image failed has nothing to train on
            yield batch
