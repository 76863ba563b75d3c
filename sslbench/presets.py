"""Built-in presets: dataset, backbone and epochs; methods add their own per-preset hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    """A named starting point for ``sslbench run``.

    Attributes:
        name: Registry name.
        summary: One line for ``sslbench ls presets``.
        dataset: Dataset registry name.
        backbone: Backbone registry name.
        width: Backbone width.
        epochs: Pretraining epochs (a method may set its own for this preset in its
            ``presets[name]["train"]``; the user's ``--epochs`` overrides both).
        transfer: Dataset of the ``few_shot_transfer`` protocol ("" for none).
        views: :class:`~sslbench.method.ViewConfig` fields changed in both views of
            every method (augmentation strength belongs to the image size).
    """

    name: str
    summary: str
    dataset: str
    backbone: str
    width: int
    epochs: int
    transfer: str = ""
    views: dict[str, Any] = field(default_factory=dict)


SMOKE = Preset("smoke", "digits (8x8), ConvNet width 8, 3 epochs: seconds; used by tests and CI", "digits", "convnet", 8, 3)
# quick: crops of 60-100% of a 28 px image, not ImageNet's 20-100% (docs/results/quick/tuning.md)
QUICK = Preset(
    "quick", "Fashion-MNIST, ConvNet 32-64-128-256, 4 epochs (BYOL 3), crops of 60-100%: 4-6.5 min per method on 2 CPU cores",
    "fashion-mnist", "convnet", 32, 4, "digits", views={"crop_scale": (0.6, 1.0)},
)
STANDARD = Preset("standard", "Fashion-MNIST, ConvNet 64-128-256-512, 30 epochs: hours on a CPU, minutes on a GPU", "fashion-mnist", "convnet", 64, 30, "digits")
# cifar10: solo-learn's CIFAR recipes (1000 epochs, crops of 8-100% as its CIFAR augmentation files);
# every field and each deviation with its reason: docs/reference/recipes.md
CIFAR10 = Preset(
    "cifar10", "CIFAR-10, ResNet-18 (CIFAR stem), 1000 epochs, solo-learn's CIFAR recipes: needs a GPU",
    "cifar10", "resnet18", 64, 1000, views={"crop_scale": (0.08, 1.0)},
)
