"""Backbones for small (8-32 px) and CIFAR-size images.

Every backbone maps ``(N, C, H, W)`` float images to ``(N, out_dim)`` features
after global average pooling, and exposes ``out_dim``. Registered in
:mod:`sslbench.builtins` under ``convnet``, ``resnet_small``, ``resnet18`` and
``resnet50``; build one with :func:`build_backbone`, which also builds
architectures of other libraries by name: ``torchvision:NAME`` (torchvision's
ImageNet model, classifier removed) and ``timm:NAME`` (when timm is installed).
"""

from __future__ import annotations

import difflib

import torch
import torchvision
from torch import nn

from sslbench.errors import SslbenchError
from sslbench.registry import registry

TORCHVISION, TIMM = "torchvision:", "timm:"


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


def build_backbone(name: str, in_channels: int, width: int | None) -> nn.Module:
    """Build a registered backbone, or another library's architecture, by name.

    Args:
        name: Registry name (``convnet``, ``resnet_small``, ``resnet18``, ``resnet50``, or a
            plugin), ``torchvision:NAME`` or ``timm:NAME``.
        in_channels: Image channels (a registered backbone is built for them; the
            ImageNet architectures always take 3).
        width: Width parameter of a registered architecture; must be ``None`` for the others.

    Returns:
        A module with ``out_dim`` mapping ``(N, C, H, W)`` to ``(N, out_dim)`` (and
        ``in_channels = 3`` for the ImageNet architectures).
    """
    if name.startswith((TORCHVISION, TIMM)):
        if width is not None:
            raise SslbenchError(f"--width applies to sslbench's own backbones, not to {name}")
        return torchvision_backbone(name[len(TORCHVISION):]) if name.startswith(TORCHVISION) else (
            timm_backbone(name[len(TIMM):]))
    return registry("backbones").get(name)(in_channels=in_channels, width=width)


def is_named_architecture(name: str) -> bool:
    """Whether ``name`` is ``torchvision:NAME`` or ``timm:NAME`` (not a registered backbone)."""
    return name.startswith((TORCHVISION, TIMM))


def _close(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _drop_classifier(model: nn.Module, name: str) -> int:
    """Replace the last ``nn.Linear`` of the classifier head by ``nn.Identity``; returns its ``in_features``.

    torchvision names the head ``fc`` (ResNet, RegNet, GoogLeNet, Inception), ``classifier``
    (VGG, DenseNet, EfficientNet, MobileNet, ConvNeXt), ``heads`` (ViT) or ``head`` (Swin).
    """
    for attr in ("fc", "classifier", "heads", "head"):
        head = getattr(model, attr, None)
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Identity())
            return head.in_features
        if isinstance(head, nn.Sequential):
            linear = [i for i, m in enumerate(head) if isinstance(m, nn.Linear)]
            if linear:
                i = linear[-1]
                in_features = head[i].in_features
                head[i] = nn.Identity()
                return in_features
    raise SslbenchError(f"torchvision:{name} has no linear classifier head that sslbench knows how to remove")


def torchvision_backbone(name: str) -> nn.Module:
    """torchvision's ImageNet architecture ``name`` (ImageNet stem), random weights, no classifier.

    ``(N, 3, H, W)`` -> ``(N, out_dim)``: the input of the removed last ``nn.Linear``
    (for ResNets, the globally pooled ``layer4`` output, as every SSL library evaluates).
    """
    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        raise SslbenchError(f"unknown torchvision model {name!r}{_close(name, names)} "
                            "(see torchvision.models.list_models())")
    # no auxiliary classifiers: they are training-only, and SSL checkpoints do not have them
    aux = name in ("googlenet", "inception_v3")
    kwargs: dict[str, object] = {"aux_logits": False, "init_weights": True} if aux else {}
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    model.out_dim = _drop_classifier(model, name)
    model.in_channels = 3
    return model


def timm_backbone(name: str) -> nn.Module:
    """timm's ``name`` with random weights and no classifier (``num_classes=0``): ``(N, 3, H, W)`` -> ``(N, D)``."""
    try:
        import timm
    except ImportError:
        raise SslbenchError(f"--arch timm:{name} needs timm, an optional extra: pip install 'sslbench[timm]'") from None
    names = timm.list_models()
    if name not in names:
        raise SslbenchError(f"unknown timm model {name!r}{_close(name, names)} (see timm.list_models())")
    model = timm.create_model(name, pretrained=False, num_classes=0)
    model.out_dim = int(model.num_features)
    model.in_channels = 3
    return model


def default_image_size(name: str) -> int | None:
    """The input size an architecture was made for: the crop of torchvision's default
    weights, timm's ``pretrained_cfg["input_size"]``; ``None`` for sslbench's own (any size)."""
    if name.startswith(TORCHVISION):
        try:
            crop = torchvision.models.get_model_weights(name[len(TORCHVISION):]).DEFAULT.transforms().crop_size
        except (ValueError, KeyError, AttributeError):
            return 224
        return int(crop[0])
    if name.startswith(TIMM):
        size = getattr(timm_backbone(name[len(TIMM):]), "pretrained_cfg", {}).get("input_size", (3, 224, 224))
        return int(size[-1])
    return None
