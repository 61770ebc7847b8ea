"""A stand-in for the WiSE-FT paper code's classifier (pickled whole by torch.save), importable by subprocesses."""

from __future__ import annotations

import copy

import torch
from torch import nn


class ImageEncoder(nn.Module):
    """The paper's ImageEncoder: holds the whole CLIP model under `.model`."""

    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.model = copy.deepcopy(clip_model)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Image features."""
        return self.model.encode_image(images)


class ClassificationHead(nn.Linear):
    """The paper's head: a linear layer over (optionally normalised) features."""

    def __init__(self, normalize: bool, weights: torch.Tensor, biases: torch.Tensor) -> None:
        super().__init__(weights.shape[1], weights.shape[0])
        self.normalize = normalize
        self.weight = nn.Parameter(weights.clone())
        self.bias = nn.Parameter(biases.clone())


class PaperClassifier(nn.Module):
    """image_encoder.model.visual.* + classification_head.*: the layout of the paper's checkpoints."""

    def __init__(self, image_encoder: ImageEncoder, classification_head: ClassificationHead) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.classification_head = classification_head


def paper_checkpoint(clip_model: nn.Module, classifier: nn.Module, path) -> None:
    """Pickle a paper-style classifier whose image tower and head are those of our `classifier`."""
    encoder = ImageEncoder(clip_model)
    encoder.model.visual.load_state_dict(classifier.visual.state_dict())
    head = ClassificationHead(True, classifier.head.weight.detach(), classifier.head.bias.detach())
    torch.save(PaperClassifier(encoder, head), path)
