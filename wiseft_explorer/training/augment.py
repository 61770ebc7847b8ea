"""The training transform of end-to-end fine-tuning, and the seeding that makes its random crops reproducible.

The paper trains on CLIP's training transform (RandomResizedCrop to the model's size, scale 0.9-1, bicubic, then
the evaluation transform's normalisation); open_clip's `image_transform(is_train=True)` builds the same. Here it is
built from the model's evaluation transform, so that it takes the same size, interpolation and mean/std as the
images are evaluated with. torchvision draws each crop from torch's global generator; `AugmentedImages` seeds that
generator, for each image, from (seed, epoch, index), so the crops depend on nothing else: not on the decoding
workers, not on the processes under torchrun, not on what ran before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import torch
from open_clip.transform import image_transform
from torch.utils.data import Dataset
from torchvision import transforms as T

from ..data.sets import EvalSet
from ..data.stream import LabelledImages
from .recipe import FinetuneConfig

SEEDING = "torch.manual_seed(int.from_bytes(blake2b(f'{seed}:{epoch}:{index}', digest_size=8), 'little')) " \
          "around each image's transform; the CPU generator's state is restored after it"


def train_transform(preprocess: Callable) -> Callable:
    """The training transform matching an open_clip evaluation transform (Resize, CenterCrop, RGB, ToTensor,
    Normalize): open_clip's own training transform at that size, interpolation, mean and std."""
    steps = list(getattr(preprocess, "transforms", ()))
    resize = next((s for s in steps if isinstance(s, T.Resize)), None)
    crop = next((s for s in steps if isinstance(s, T.CenterCrop)), None)
    normalize = next((s for s in steps if isinstance(s, T.Normalize)), None)
    if crop is None or normalize is None:
        raise ValueError(f"cannot derive a training transform from {preprocess!r}: it has no CenterCrop and "
                         "Normalize to take the size and mean/std from; pass --augment none to train on it as is")
    interpolation = resize.interpolation.value if resize is not None else "bicubic"
    return image_transform(tuple(crop.size), is_train=True, mean=tuple(normalize.mean), std=tuple(normalize.std),
                           interpolation=interpolation)


def image_seed(seed: int, epoch: int, index: int) -> int:
    """The generator seed of one image's transform in one epoch."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class AugmentedImages(Dataset):
    """Items of a dataset whose transform is random (the training transform), each drawn from its own seed.

    Fine-tuning sets `epoch` before each pass (workers are not persistent, so each pass's workers see it)."""

    def __init__(self, images: Dataset, seed: int) -> None:
        self.images, self.seed, self.epoch = images, seed, 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(image_seed(self.seed, self.epoch, index))
            return self.images[index]


def training_images(ev: EvalSet, preprocess: Callable, config: FinetuneConfig) -> tuple[Dataset, dict[str, Any]]:
    """The training images of a set as `config` reads them, and a record of their transform for the checkpoint.

    End-to-end (LP-FT's stage 2, FLYP) with augment='train': the training transform, seeded per image; otherwise
    (augment='none', or the linear mode, whose features the paper computes with the evaluation transform) the
    evaluation transform."""
    if config.mode != "linear" and config.augment == "train":
        transform = train_transform(preprocess)
        return AugmentedImages(LabelledImages(ev, transform), config.seed), {"train_transform": repr(transform),
                                                                   "augment_seeding": SEEDING}
    return LabelledImages(ev, preprocess), {"train_transform": repr(preprocess)}
