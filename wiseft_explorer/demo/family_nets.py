"""The demo family's architectures: small standard image classifiers for the world's 32-px images, torch only.

Three kinds, each sized by a width and a depth: an MLP on the flattened pixels (depth 0: a linear classifier), a
plain CNN (conv-BN-ReLU blocks, each halving the resolution, then global average pooling) and a ResNet-like CNN
(a stem and pairs of 3x3 convolutions with identity shortcuts, the width doubling every second block).
"""

from __future__ import annotations

from torch import nn

ARCHITECTURES = ("mlp", "cnn", "resnet")
IMAGE_SIZE = 32


def _conv_bn(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def mlp(width: int, depth: int, classes: int) -> nn.Module:
    """Flattened pixels through `depth` hidden layers of `width` units (depth 0: one linear layer)."""
    layers: list[nn.Module] = [nn.Flatten()]
    size = 3 * IMAGE_SIZE * IMAGE_SIZE
    for _ in range(depth):
        layers += [nn.Linear(size, width), nn.ReLU(inplace=True)]
        size = width
    return nn.Sequential(*layers, nn.Linear(size, classes))


def cnn(width: int, depth: int, classes: int) -> nn.Module:
    """A stride-2 conv-BN-ReLU stem (to 16 px), then `depth` - 1 conv-BN-ReLU blocks of widths 2·width, 4·width
    (capped there), each followed by 2x2 max pooling."""
    layers: list[nn.Module] = [*_conv_bn(3, width, stride=2)]
    c_in = width
    for k in range(1, depth):
        c_out = width * min(2 ** k, 4)
        layers += [*_conv_bn(c_in, c_out), nn.MaxPool2d(2)]
        c_in = c_out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, classes))


class _Residual(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 strided) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(c_in, c_out, stride), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(c_out))
        self.skip: nn.Module = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):  # noqa: D102 - nn.Module's forward
        return self.act(self.body(x) + self.skip(x))


def resnet(width: int, depth: int, classes: int) -> nn.Module:
    """A stride-2 stem (to 16 px, as ResNets' stems downsample), then `depth` residual blocks; every second block
    halves the resolution and doubles the width."""
    layers: list[nn.Module] = [*_conv_bn(3, width, stride=2)]
    c_in = width
    for k in range(depth):
        stride = 2 if k % 2 == 1 else 1
        c_out = c_in * stride
        layers.append(_Residual(c_in, c_out, stride))
        c_in = c_out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, classes))


def build_net(architecture: str, width: int, depth: int, classes: int) -> nn.Module:
    """One member's network, freshly initialised (seed torch first for a reproducible start)."""
    builders = {"mlp": mlp, "cnn": cnn, "resnet": resnet}
    if architecture not in builders:
        raise ValueError(f"unknown family architecture {architecture!r}; use one of {', '.join(ARCHITECTURES)}")
    return builders[architecture](width, depth, classes)
