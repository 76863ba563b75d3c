"""Lazy ``module:attr`` targets of the built-in methods, protocols, datasets, backbones and presets.

Listing strings here (not imports) keeps the layering: core code reaches
``baselines/`` and ``protocols/`` only through :mod:`sslbench.registry`.
"""

BUILTINS: dict[str, dict[str, str]] = {
    "methods": {
        "simsiam": "baselines.simsiam:SIMSIAM",
        "vicreg": "baselines.vicreg:VICREG",
        "vicreg_mod": "baselines.vicreg_mod:VICREG_MOD",
        "byol": "baselines.byol:BYOL",
        "barlow_twins": "baselines.barlow_twins:BARLOW_TWINS",
        "simclr": "baselines.simclr:SIMCLR",
        "vicreg_novar": "baselines.variants:VICREG_NOVAR",
        "vicreg_nocov": "baselines.variants:VICREG_NOCOV",
        "simsiam_nosg": "baselines.variants:SIMSIAM_NOSG",
        "byol_noema": "baselines.variants:BYOL_NOEMA",
        "barlow_twins_lambda05": "baselines.variants:BARLOW_TWINS_LAMBDA05",
        "random_init": "baselines.floors:RANDOM_INIT",
        "raw_pixels": "baselines.floors:RAW_PIXELS",
    },
    "protocols": {
        "knn": "protocols.knn:KNN",
        "linear": "protocols.linear:Linear",
        "collapse": "protocols.collapse:Collapse",
        "few_shot": "protocols.few_shot:FewShot",
        "few_shot_transfer": "protocols.few_shot:FewShotTransfer",
        "low_shot": "protocols.low_shot:LowShot",
    },
    "datasets": {
        "fashion-mnist": "sslbench.data.fashion_mnist:load_fashion_mnist",
        "digits": "sslbench.data.digits:load_digits",
        "cifar10": "sslbench.data.torchvision_sets:load_cifar10",
        "cifar100": "sslbench.data.torchvision_sets:load_cifar100",
        "stl10": "sslbench.data.torchvision_sets:load_stl10",
        "imagefolder": "sslbench.data.imagefolder:load_imagefolder",
    },
    "backbones": {
        "convnet": "sslbench.backbones:ConvNet",
        "resnet_small": "sslbench.backbones:SmallResNet",
        "resnet18": "sslbench.backbones:resnet18_cifar",
        "resnet50": "sslbench.backbones:resnet50_cifar",
    },
    "presets": {
        "smoke": "sslbench.presets:SMOKE",
        "quick": "sslbench.presets:QUICK",
        "standard": "sslbench.presets:STANDARD",
        "cifar10": "sslbench.presets:CIFAR10",
    },
}
