"""The paper's src/models/modeling.py classes, built from a CLIP model instead of `clip.load`."""

import torch


class ImageEncoder(torch.nn.Module):
    def __init__(self, clip_model, train_preprocess, val_preprocess, keep_lang=False):
        super().__init__()
        self.model, self.train_preprocess, self.val_preprocess = clip_model, train_preprocess, val_preprocess
        self.cache_dir = None
        if not keep_lang and hasattr(self.model, "transformer"):
            delattr(self.model, "transformer")

    def forward(self, images):
        return self.model.encode_image(images)


class ClassificationHead(torch.nn.Linear):
    def __init__(self, normalize, weights, biases=None):
        output_size, input_size = weights.shape
        super().__init__(input_size, output_size)
        self.normalize = normalize
        self.weight = torch.nn.Parameter(weights.clone())
        self.bias = torch.nn.Parameter(biases.clone() if biases is not None else torch.zeros_like(self.bias))

    def forward(self, inputs):
        if self.normalize:
            inputs = inputs / inputs.norm(dim=-1, keepdim=True)
        return super().forward(inputs)


class ImageClassifier(torch.nn.Module):
    def __init__(self, image_encoder, classification_head, process_images=True):
        super().__init__()
        self.image_encoder = image_encoder
        self.classification_head = classification_head
        self.process_images = process_images
        self.train_preprocess = image_encoder.train_preprocess
        self.val_preprocess = image_encoder.val_preprocess

    def forward(self, inputs):
        if self.process_images:
            inputs = self.image_encoder(inputs)
        return self.classification_head(inputs)
