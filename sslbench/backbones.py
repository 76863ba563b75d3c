"""Backbones for small (8-32 px) and CIFAR-size images.

Every backbone maps ``(N, C, H, W)`` float images to ``(N, out_dim)`` features
after global average pooling, and exposes ``out_dim``. Registered in
:mod:`sslbench.builtins` under ``convnet``, ``resnet_small``, ``resnet18`` and
``resnet50``; build one with :func:`build_backbone`.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from sslbench.registry import registry


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class ConvNet(nn.Module):
    """Four conv-BN-ReLU stages of widths ``w, 2w, 4w, 8w``; 2x2 max-pool after the first three.

    Args:
        in_channels: Image channels (1 for Fashion-MNIST/digits, 3 for CIFAR).
        width: ``w``; ``out_dim = 8 * w``.
    """

    def __init__(self, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(widths):
            layers += _conv_bn_relu(c, w)
            if i < 3:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            c = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, 8w)``."""
        return self.pool(self.features(x)).flatten(1)


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """CIFAR-style ResNet (He et al. 2016, sec. 4.2): 3 stages of ``blocks`` basic blocks.

    With ``blocks=3`` this is ResNet-20. Widths ``w, 2w, 4w``; ``out_dim = 4 * w``.

    Args:
        in_channels: Image channels.
        width: Width of the first stage (16 in the paper).
        blocks: Basic blocks per stage.
    """

    def __init__(self, in_channels: int = 1, width: int = 16, blocks: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn_relu(in_channels, width))
        stages: list[nn.Module] = []
        c = width
        for i, w in enumerate([width, 2 * width, 4 * width]):
            for b in range(blocks):
                stages.append(_BasicBlock(c, w, 2 if (i > 0 and b == 0) else 1))
                c = w
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, 4w)``."""
        return self.pool(self.stages(self.stem(x))).flatten(1)


def _cifar_stem(model: torchvision.models.ResNet, in_channels: int) -> nn.Module:
    """Replace the ImageNet stem by a 3x3 stride-1 conv without max-pool (SimCLR, Chen 2020, App. B.9)."""
    model.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    out_dim = model.fc.in_features
    model.fc = nn.Identity()
    model.out_dim = out_dim
    return model


def resnet18_cifar(in_channels: int = 3, width: int = 64) -> nn.Module:
    """torchvision ResNet-18 with a CIFAR stem; ``(N, C, 32, 32)`` -> ``(N, 512)``. ``width`` must be 64."""
    if width != 64:
        raise ValueError("resnet18 has a fixed width of 64")
    return _cifar_stem(torchvision.models.resnet18(weights=None), in_channels)


def resnet50_cifar(in_channels: int = 3, width: int = 64) -> nn.Module:
    """torchvision ResNet-50 with a CIFAR stem; ``(N, C, 32, 32)`` -> ``(N, 2048)``. ``width`` must be 64."""
    if width != 64:
        raise ValueError("resnet50 has a fixed width of 64")
    return _cifar_stem(torchvision.models.resnet50(weights=None), in_channels)


def build_backbone(name: str, in_channels: int, width: int) -> nn.Module:
    """Build a registered backbone by name.

    Args:
        name: Registry name (``convnet``, ``resnet_small``, ``resnet18``, ``resnet50``, or a plugin).
        in_channels: Image channels.
        width: Width parameter of the architecture.

    Returns:
        A module with ``out_dim`` mapping ``(N, C, H, W)`` to ``(N, out_dim)``.
    """
    return registry("backbones").get(name)(in_channels=in_channels, width=width)
