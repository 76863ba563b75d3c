"""Lazy ``module:attr`` targets of the built-in methods, protocols, protocol sets, datasets, backbones and presets.

Listing strings here (not imports) keeps the layering: core code reaches
``baselines/`` and ``protocols/`` only through :mod:`sslbench.registry`. Each
target carries its one-line summary, so ``sslbench ls`` and the name checks of
the command line need no import of torch or of the targets themselves;
``tests/test_registry.py`` checks that every summary is the target's own (its
``summary`` attribute or the first line of its docstring, as plain text).
"""

from __future__ import annotations

from typing import NamedTuple


class Builtin(NamedTuple):
    """One built-in registry entry.

    Attributes:
        target: ``"module:attr"``, imported on first use.
        summary: The target's one-line summary as plain text (no reST markup).
    """

    target: str
    summary: str


BUILTINS: dict[str, dict[str, Builtin]] = {
    "methods": {
        "simsiam": Builtin("baselines.simsiam:SIMSIAM", "SimSiam: predictor + stop-gradient, negative cosine"),
        "vicreg": Builtin("baselines.vicreg:VICREG", "VICReg: invariance + variance + covariance (25/25/1)"),
        "vicreg_mod": Builtin("baselines.vicreg_mod:VICREG_MOD",
                              "VICReg with the covariance term on each branch's correlation matrix"),
        "byol": Builtin("baselines.byol:BYOL", "BYOL: EMA target network + predictor, 2 - 2cos regression"),
        "barlow_twins": Builtin("baselines.barlow_twins:BARLOW_TWINS",
                                "Barlow Twins: cross-correlation to identity, lambda 0.0051"),
        "simclr": Builtin("baselines.simclr:SIMCLR", "SimCLR: NT-Xent contrastive loss, configurable temperature"),
        "vicreg_novar": Builtin("baselines.variants:VICREG_NOVAR", "VICReg without the variance term (collapses)"),
        "vicreg_nocov": Builtin("baselines.variants:VICREG_NOCOV",
                                "VICReg without the covariance term (dimensional collapse)"),
        "simsiam_nosg": Builtin("baselines.variants:SIMSIAM_NOSG", "SimSiam without stop-gradient (collapses)"),
        "byol_noema": Builtin("baselines.variants:BYOL_NOEMA", "BYOL with tau = 0: the target is the online network"),
        "barlow_twins_lambda05": Builtin("baselines.variants:BARLOW_TWINS_LAMBDA05",
                                         "Barlow Twins with lambda = 0.05 (about 10x)"),
        "random_init": Builtin("baselines.floors:RANDOM_INIT", "floor: the same backbone, untrained (seeded init)"),
        "raw_pixels": Builtin("baselines.floors:RAW_PIXELS", "floor: normalised pixels, flattened"),
    },
    "protocols": {
        "knn": Builtin("protocols.knn:KNN",
                       "Weighted kNN (InstDisc/DINO): cosine on l2-normalised backbone features by default."),
        "linear": Builtin("protocols.linear:Linear",
                          "Linear probe: standardised features, softmax regression, wd chosen on held-out train."),
        "collapse": Builtin("protocols.collapse:Collapse",
                            "The collapse suite on a seeded subsample of the test split; labels unused."),
        "few_shot": Builtin("protocols.few_shot:FewShot",
                            "N-way K-shot episodes: nearest cosine centroid and per-episode logistic regression."),
        "few_shot_transfer": Builtin("protocols.few_shot:FewShotTransfer",
                                     "FewShot on a transfer set: episodes from another dataset's classes."),
        "low_shot": Builtin("protocols.low_shot:LowShot",
                            "Linear probe trained on k labelled train samples per class, scored on all of test."),
    },
    "datasets": {
        "fashion-mnist": Builtin("sslbench.data.fashion_mnist:load_fashion_mnist",
                                 "Load Fashion-MNIST from a local root, the Debian package, or a download."),
        "fashion-mnist-10k": Builtin("sslbench.data.fashion_mnist:load_fashion_mnist_10k",
                                     "Fashion-MNIST with a fixed stratified 10k-image train subset (1000 per class) "
                                     "and the full test split."),
        "digits": Builtin("sslbench.data.digits:load_digits",
                          "Load the digits with the fixed stratified 80/20 split (seed 0)."),
        "cifar10": Builtin("sslbench.data.torchvision_sets:load_cifar10",
                           "CIFAR-10: train (50000, 3, 32, 32), test (10000, 3, 32, 32) uint8, 10 classes."),
        "cifar100": Builtin("sslbench.data.torchvision_sets:load_cifar100",
                            "CIFAR-100 (fine labels): train (50000, 3, 32, 32), test (10000, 3, 32, 32), 100 classes."),
        "stl10": Builtin("sslbench.data.torchvision_sets:load_stl10",
                         "STL-10 labelled splits: train (5000, 3, 96, 96), test (8000, 3, 96, 96), 10 classes."),
        "imagefolder": Builtin("sslbench.data.imagefolder:load_imagefolder",
                               "Load a folder of class-labelled images into memory."),
    },
    "backbones": {
        "convnet": Builtin("sslbench.backbones:ConvNet",
                           "Four conv-BN-ReLU stages of widths w, 2w, 4w, 8w; 2x2 max-pool after the first three."),
        "resnet_small": Builtin("sslbench.backbones:SmallResNet",
                                "CIFAR-style ResNet (He et al. 2016, sec. 4.2): 3 stages of blocks basic blocks."),
        "resnet18": Builtin("sslbench.backbones:resnet18_cifar",
                            "torchvision ResNet-18 with a CIFAR stem; (N, C, 32, 32) -> (N, 512). width must be 64."),
        "resnet50": Builtin("sslbench.backbones:resnet50_cifar",
                            "torchvision ResNet-50 with a CIFAR stem; (N, C, 32, 32) -> (N, 2048). width must be 64."),
    },
    "protocol_sets": {
        "full": Builtin("sslbench.protocol_sets:FULL",
                        "every built-in protocol at its defaults (the default of sslbench run)"),
        "sweep": Builtin("sslbench.protocol_sets:SWEEP",
                         "kNN (k = 20), a 3-point linear probe and the collapse readings: a sweep cell's main metrics"),
    },
    "presets": {
        "smoke": Builtin("sslbench.presets:SMOKE", "digits (8x8), ConvNet width 8, 3 epochs: seconds; used by tests and CI"),
        "quick": Builtin("sslbench.presets:QUICK",
                         "Fashion-MNIST, ConvNet 32-64-128-256, 4 epochs (BYOL 3), crops of 60-100%: "
                         "4-6.5 min per method on 2 CPU cores"),
        "standard": Builtin("sslbench.presets:STANDARD",
                            "Fashion-MNIST, ConvNet 64-128-256-512, 30 epochs: hours on a CPU, minutes on a GPU"),
        "cifar10": Builtin("sslbench.presets:CIFAR10",
                           "CIFAR-10, ResNet-18 (CIFAR stem), 1000 epochs, solo-learn's CIFAR recipes: needs a GPU"),
    },
}
