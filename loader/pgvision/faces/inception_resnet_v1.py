"""InceptionResnetV1, the FaceNet network (512-d, L2-normalised output), in torch.

Architecture of Szegedy et al. 2016, "Inception-v4, Inception-ResNet and the Impact of
Residual Connections on Learning" (arXiv:1602.07261), as trained for faces by David
Sandberg's ``facenet`` (MIT) and ported to PyTorch by Tim Esler's ``facenet-pytorch`` (MIT,
``models/inception_resnet_v1.py``). The module and parameter names here are facenet-pytorch's
(``conv2d_1a.conv.weight``, ``repeat_1.0.branch1.1.bn.running_mean``, ...), so its state
dicts load with ``strict=True``.

Why not depend on facenet-pytorch: its releases pin torch < 2.3 and torchvision < 0.18
(see ``../shared/ENVIRONMENT.md``), and no maintained package on PyPI defines this network
with those key names. Only the embedding head is built (``classify=False``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3, TensorFlow's) -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001, momentum=0.1)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


def _chain(*convs: tuple) -> nn.Sequential:
    return nn.Sequential(*(BasicConv2d(*c) for c in convs))


class _Residual(nn.Module):
    """Inception-ResNet block: parallel branches, 1x1 up-projection, scaled residual, ReLU."""

    def __init__(self, channels: int, branches: list[nn.Module], concat: int, scale: float, relu: bool = True):
        super().__init__()
        self.scale = scale
        for i, branch in enumerate(branches):
            self.add_module(f"branch{i}", branch)
        self.n_branches = len(branches)
        self.conv2d = nn.Conv2d(concat, channels, 1)
        self.relu = nn.ReLU() if relu else None

    def forward(self, x):
        out = torch.cat([getattr(self, f"branch{i}")(x) for i in range(self.n_branches)], 1)
        out = self.conv2d(out) * self.scale + x
        return self.relu(out) if self.relu is not None else out


def block35(scale: float) -> _Residual:
    """Inception-ResNet-A, 35x35 grid, 256 channels."""
    return _Residual(
        256,
        [
            BasicConv2d(256, 32, 1),
            _chain((256, 32, 1), (32, 32, 3, 1, 1)),
            _chain((256, 32, 1), (32, 32, 3, 1, 1), (32, 32, 3, 1, 1)),
        ],
        96,
        scale,
    )


def block17(scale: float) -> _Residual:
    """Inception-ResNet-B, 17x17 grid, 896 channels."""
    return _Residual(
        896,
        [BasicConv2d(896, 128, 1), _chain((896, 128, 1), (128, 128, (1, 7), 1, (0, 3)), (128, 128, (7, 1), 1, (3, 0)))],
        256,
        scale,
    )


def block8(scale: float, relu: bool = True) -> _Residual:
    """Inception-ResNet-C, 8x8 grid, 1792 channels."""
    return _Residual(
        1792,
        [
            BasicConv2d(1792, 192, 1),
            _chain((1792, 192, 1), (192, 192, (1, 3), 1, (0, 1)), (192, 192, (3, 1), 1, (1, 0))),
        ],
        384,
        scale,
        relu,
    )


class _Reduction(nn.Module):
    """Grid reduction: branches concatenated, the last a 3x3/2 max pool."""

    def __init__(self, branches: list[nn.Module]):
        super().__init__()
        for i, branch in enumerate(branches):
            self.add_module(f"branch{i}", branch)
        self.n_branches = len(branches)

    def forward(self, x):
        return torch.cat([getattr(self, f"branch{i}")(x) for i in range(self.n_branches)], 1)


class InceptionResnetV1(nn.Module):
    """FaceNet's InceptionResnetV1 embedding network.

    Input: (N, 3, 160, 160) float32, RGB standardised as ``(x - 127.5) / 128``.
    Output: (N, 512) float32, L2-normalised (cosine similarity = dot product).
    """

    def __init__(self):
        super().__init__()
        self.conv2d_1a = BasicConv2d(3, 32, 3, stride=2)
        self.conv2d_2a = BasicConv2d(32, 32, 3)
        self.conv2d_2b = BasicConv2d(32, 64, 3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = BasicConv2d(64, 80, 1)
        self.conv2d_4a = BasicConv2d(80, 192, 3)
        self.conv2d_4b = BasicConv2d(192, 256, 3, stride=2)
        self.repeat_1 = nn.Sequential(*(block35(0.17) for _ in range(5)))
        self.mixed_6a = _Reduction(
            [
                BasicConv2d(256, 384, 3, stride=2),
                _chain((256, 192, 1), (192, 192, 3, 1, 1), (192, 256, 3, 2)),
                nn.MaxPool2d(3, stride=2),
            ]
        )
        self.repeat_2 = nn.Sequential(*(block17(0.10) for _ in range(10)))
        self.mixed_7a = _Reduction(
            [
                _chain((896, 256, 1), (256, 384, 3, 2)),
                _chain((896, 256, 1), (256, 256, 3, 2)),
                _chain((896, 256, 1), (256, 256, 3, 1, 1), (256, 256, 3, 2)),
                nn.MaxPool2d(3, stride=2),
            ]
        )
        self.repeat_3 = nn.Sequential(*(block8(0.20) for _ in range(5)))
        self.block8 = block8(1.0, relu=False)
        self.avgpool_1a = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.6)
        self.last_linear = nn.Linear(1792, 512, bias=False)
        self.last_bn = nn.BatchNorm1d(512, eps=0.001, momentum=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in ("conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a", "conv2d_4b",
                     "repeat_1", "mixed_6a", "repeat_2", "mixed_7a", "repeat_3", "block8", "avgpool_1a", "dropout"):
            x = getattr(self, name)(x)
        x = self.last_bn(self.last_linear(x.flatten(1)))
        return F.normalize(x, p=2, dim=1)
