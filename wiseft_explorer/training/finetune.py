"""Fine-tuning a zero-shot classifier with the paper's recipe: end-to-end (image tower + head) or linear classifier."""

from __future__ import annotations

import copy
import math
import multiprocessing
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, TensorDataset
from tqdm.auto import tqdm

from ..core.checkpoints import save_checkpoint
from ..core.distributed import Group
from ..core.models import ImageClassifier
from ..data.stream import collate_loaded, worker_context, worker_init
from .distributed import RankBatches, data_parallel, gather_features, rank_indices, reduce_training

MODES = ("end-to-end", "linear")
BN_MODES = ("frozen", "train")
FEATURE_BATCH = 256  # images per batch of the linear mode's one feature pass
# In-memory (images (N,3,H,W), labels (N,)) tensors, or a Dataset of (image, label) items, where an item is None
# when its image could not be loaded (stream.LabelledImages over a folder).
TrainData: TypeAlias = Dataset | tuple[torch.Tensor, torch.Tensor]
ProgressCallback = Callable[[int, int, float], None]  # (step, total steps, loss)
Batch = tuple[torch.Tensor, torch.Tensor]  # images (B,3,H,W) or features (B,D), labels (B,)


@dataclass(frozen=True)
class FinetuneConfig:
    """The fine-tuning recipe (defaults: the paper's, except lr/epochs/batch which depend on the data)."""

    mode: str = "end-to-end"
    epochs: int = 10
    lr: float = 3e-5
    batch_size: int = 128
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup: int = 500  # steps of linear warmup before the cosine decay
    grad_clip: float = 1.0
    bn: str = "frozen"  # frozen: BatchNorm running statistics keep their pretrained values
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.bn not in BN_MODES:
            raise ValueError(f"bn must be one of {BN_MODES}, not {self.bn!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able recipe for checkpoint metadata."""
        return asdict(self)


@dataclass(frozen=True)
class LoaderOptions:
    """How training images are read, which is not part of the recipe: the same seed trains the same weights."""

    workers: int = 0  # decoding worker processes; 0 decodes in the main process
    context: multiprocessing.context.BaseContext | None = None  # start method; None: stream.worker_context()
    prefetch: int = 2  # batches each worker decodes ahead

    def __post_init__(self) -> None:
        if self.workers < 0 or self.prefetch < 1:
            raise ValueError(f"workers must be >= 0 and prefetch >= 1, not {self.workers} and {self.prefetch}")


@dataclass
class FinetuneResult:
    """The fine-tuned classifier (a new module) and how training went."""

    classifier: ImageClassifier
    config: FinetuneConfig
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    skipped: list[int] = field(default_factory=list)  # dataset indices of images that could not be loaded
    train_accuracy: float | None = None  # top-1 on the training batches of the last epoch (as the model was then)

    @property
    def final_loss(self) -> float | None:
        """Mean loss of the last epoch's steps."""
        per_epoch = max(1, len(self.losses) // max(1, self.config.epochs))
        return sum(self.losses[-per_epoch:]) / len(self.losses[-per_epoch:]) if self.losses else None


def cosine_lr(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warmup to `base`, then cosine decay to 0 at `total` steps."""
    if step < warmup:
        return base * (step + 1) / warmup
    return 0.5 * base * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _as_dataset(data: TrainData) -> Dataset:
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
    dataset = _Numbered(_as_dataset(data))
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


def _loaded(loader: DataLoader, failed: set[int]) -> Iterator[Batch]:
    """The loader's batches that have images; the indices of images that failed to load are added to `failed`."""
    for batch, bad in loader:
        failed.update(bad)
        if batch is not None:  # a batch whose every image failed has nothing to train on
            yield batch


def set_train_mode(classifier: ImageClassifier, bn: str) -> None:
    """Training mode, except that BatchNorm layers stay in eval mode when bn='frozen'."""
    classifier.train()
    if bn == "frozen":
        # Photo-only batch statistics would overwrite the pretrained ones and hurt every other style.
        for module in classifier.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def effective_warmup(config: FinetuneConfig, total_steps: int) -> int:
    """The warmup steps actually run: at most a tenth of a short run (it must not spend all its steps warming up)."""
    return min(config.warmup, max(1, total_steps // 10))


# (loss, logits, labels) of one training batch
StepLoss = Callable[[Any], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def _optimise(params: list[nn.Parameter], batches: Callable[[], Any], step_loss: StepLoss,
              config: FinetuneConfig, steps_per_epoch: int, desc: str, progress: bool,
              callback: ProgressCallback | None, ranks: Group | None = None) -> tuple[list[float], float | None]:
    """The shared loop: AdamW, warmup + cosine, gradient-norm clipping; the loss of every step, last-epoch top-1."""
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=config.betas, eps=config.eps,
                                  weight_decay=config.weight_decay)
    total = config.epochs * steps_per_epoch
    warmup = effective_warmup(config, total)
    losses: list[float] = []
    bar = tqdm(total=total, desc=desc, disable=not progress, mininterval=1.0)
    step = 0
    for _ in range(config.epochs):
        right = seen = 0
        for batch in batches():
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, total, config.lr, warmup)
            loss, logits, labels = step_loss(batch)
            right += int((logits.detach().argmax(-1) == labels).sum())
            seen += len(labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            losses.append(loss.item())
            step += 1
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{sum(losses[-10:]) / 10:.3f}")
            if callback is not None:
                callback(step, total, losses[-1])
    bar.close()
    losses, right, seen = reduce_training(ranks or Group(), losses, right, seen)
    return losses, (right / seen if losses and seen else None)


def finetune_end_to_end(classifier: ImageClassifier, data: TrainData, config: FinetuneConfig | None = None,
                        device: torch.device | str = "cpu", progress: bool = True,
                        callback: ProgressCallback | None = None,
                        loader: LoaderOptions | None = None, group: Group | None = None) -> FinetuneResult:
    """Fine-tune image tower and head (initialised from `classifier`, which is left unchanged) with cross-entropy.

    With a distributed `group` (torchrun), every rank trains on its share of each global batch under
    DistributedDataParallel.
    """
    config = config or FinetuneConfig()
    start = time.perf_counter()
    model = copy.deepcopy(classifier).to(device).float().requires_grad_(True)
    batches = training_loader(data, config.batch_size, device, loader, seed=config.seed, group=group)
    failed: set[int] = set()
    set_train_mode(model, config.bn)
    net = data_parallel(model, group or Group())

    def step_loss(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, labels = batch
        logits, labels = net(images.to(device, non_blocking=True)), labels.to(device, non_blocking=True)
        return F.cross_entropy(logits, labels), logits, labels

    losses, accuracy = _optimise(list(model.parameters()), lambda: _loaded(batches, failed), step_loss, config,
                                 len(batches), "fine-tune (end-to-end)", progress, callback, group)
    if not losses and failed:
        raise ValueError("no training image could be loaded")
    model.eval().requires_grad_(False)
    return FinetuneResult(model, as_run(config, "end-to-end", len(batches)), losses, time.perf_counter() - start,
                          sorted(failed), accuracy)


@torch.no_grad()
def image_features(classifier: ImageClassifier, data: TrainData, device: torch.device | str = "cpu",
                   batch_size: int = FEATURE_BATCH, loader: LoaderOptions | None = None,
                   failed: set[int] | None = None, group: Group | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised features (N, D) and labels (N,) of the images that loaded, in one pass; the rest go into `failed`.

    With a distributed `group`, each rank computes every world-th item and all of them are gathered on every rank.
    """
    classifier.eval()
    feats, labels = [], []
    failed = set() if failed is None else failed
    group = group or Group()
    indices = rank_indices(len(_as_dataset(data)), group) if group.distributed else None
    for images, y in _loaded(training_loader(data, batch_size, device, loader, indices=indices), failed):
        feats.append(classifier.features(images.to(device, non_blocking=True)).float().cpu())
        labels.append(y.long())
    if group.distributed:
        mine = (torch.cat(feats), torch.cat(labels)) if feats else (torch.zeros(0, 0), torch.zeros(0, dtype=torch.long))
        gathered, labels_all, failed_all = gather_features(group, indices, *mine, failed)
        failed.update(failed_all)
        feats, labels = [gathered], [labels_all]
    if not feats or not len(feats[0]):
        raise ValueError("no training image could be loaded")
    return torch.cat(feats), torch.cat(labels)


def finetune_linear(classifier: ImageClassifier, data: TrainData, config: FinetuneConfig | None = None,
                    device: torch.device | str = "cpu", progress: bool = True,
                    callback: ProgressCallback | None = None, loader: LoaderOptions | None = None,
                    group: Group | None = None) -> FinetuneResult:
    """Train only the head (initialised from the zero-shot head) on frozen image features.

    Distributed, the feature pass is shared out and gathered; the head (a few seconds of work) then trains alike on
    every rank, on every feature, exactly as in one process.
    """
    config = config or FinetuneConfig(mode="linear")
    start = time.perf_counter()
    model = copy.deepcopy(classifier).to(device).float().eval().requires_grad_(False)
    # The tower is frozen, so its features are computed once, streaming, instead of every epoch: the features
    # (N x D floats: about 4 GB for ImageNet's 1.28 M images at D=768) are what stays in memory, never the images.
    failed: set[int] = set()
    feats, labels = image_features(model, data, device, loader=loader, failed=failed, group=group)
    head = model.head.requires_grad_(True)
    batches = training_loader((feats, labels), config.batch_size, device, seed=config.seed)

    def step_loss(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        logits, y = head(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
        return F.cross_entropy(logits, y), logits, y

    losses, accuracy = _optimise(list(head.parameters()), lambda: _loaded(batches, set()), step_loss, config, len(batches),
                       "fine-tune (linear classifier)", progress, callback)
    model.requires_grad_(False)
    return FinetuneResult(model, as_run(config, "linear", len(batches)), losses, time.perf_counter() - start,
                          sorted(failed), accuracy)


def as_run(config: FinetuneConfig, mode: str, steps_per_epoch: int) -> FinetuneConfig:
    """The config as it was actually run: its mode, and the warmup a short run cut down (recorded in checkpoints)."""
    warmup = effective_warmup(config, config.epochs * steps_per_epoch)
    return FinetuneConfig(**{**config.to_dict(), "mode": mode, "warmup": warmup})


def finetune(classifier: ImageClassifier, data: TrainData, config: FinetuneConfig,
             device: torch.device | str = "cpu", progress: bool = True,
             callback: ProgressCallback | None = None, loader: LoaderOptions | None = None,
             group: Group | None = None) -> FinetuneResult:
    """Fine-tune in the config's mode (end-to-end or linear), reading `data` as `loader` says, on `group`'s ranks."""
    run = finetune_end_to_end if config.mode == "end-to-end" else finetune_linear
    return run(classifier, data, config, device, progress, callback, loader, group)


def save_finetuned(path: str | Path, result: FinetuneResult, metadata: dict[str, Any],
                   dtype: torch.dtype | None = None) -> Path:
    """Write a classifier checkpoint in our format; linear classifiers store only the head."""
    state = result.classifier.state_dict()
    meta = {**metadata, "recipe": {**metadata.get("recipe", {}), **result.config.to_dict(),
                                   "final_loss": result.final_loss, "train_accuracy": result.train_accuracy},
            "seed": result.config.seed, "train_seconds": round(result.seconds, 1)}
    if result.config.mode == "linear":
        state = {k: v for k, v in state.items() if k.startswith("head.")}
        meta["image_tower"] = "zeroshot"
    return save_checkpoint(path, state, meta, dtype=dtype)
