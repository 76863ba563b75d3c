"""Checkpoints of other SSL libraries, saved the way each saves them, load with the source model's features.

Each layout is built from one torchvision ResNet-18 (random weights, random BatchNorm
statistics) with the exact key names the peer writes; where and how each peer
writes them is in docs/external_checkpoints.md. Every file is read back with
``weights_only=True`` and the loaded backbone must give bit-identical features.
"""

import argparse
import builtins
import copy
import functools
import sys
import types
import warnings
import zipfile

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from sslbench.augment import normalize
from sslbench.backbones import ConvNet, build_backbone, default_image_size
from sslbench.checkpoint_formats import LAYOUTS, flatten
from sslbench.encoders import encoder_features, load_encoder
from sslbench.errors import SslbenchError
from sslbench.preprocess import IMAGENET_MEAN, IMAGENET_STD, InputSpec, parse_normalize
from sslbench.types import ImageData

ARCH = "torchvision:resnet18"


def _randomize_bn(net: nn.Module, gen: torch.Generator) -> nn.Module:
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
            m.weight.data.copy_(1 + 0.1 * torch.randn(m.num_features, generator=gen))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=gen))
            m.num_batches_tracked.fill_(1000)
    return net


@functools.cache
def _resnet18(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return _randomize_bn(torchvision.models.resnet18(weights=None), torch.Generator().manual_seed(seed)).eval()


def resnet18(seed: int) -> nn.Module:
    """A torchvision ResNet-18 whose every weight and BN statistic is seeded (a fresh copy)."""
    return copy.deepcopy(_resnet18(seed))


def backbone(net: nn.Module) -> nn.Module:
    """``net`` with its classifier removed: what every peer evaluates."""
    b = copy.deepcopy(net)
    b.fc = nn.Identity()
    return b.eval()


@pytest.fixture(scope="module")
def source():
    return resnet18(0)


@pytest.fixture(scope="module")
def x():
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


class DDP(nn.Module):
    """Names keys as ``DistributedDataParallel.state_dict()`` does: ``module.`` + the wrapped module's."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def _sgd(model: nn.Module, **group_extras) -> dict:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.param_groups[0].update(group_extras)
    return opt.state_dict()


def _lightning(state_dict: dict, model: nn.Module, **extra) -> dict:
    """``trainer.save_checkpoint`` (Lightning's ``_CheckpointConnector.dump_checkpoint``)."""
    progress = {"total": {"ready": 100, "started": 100, "processed": 100, "completed": 100}}
    return {"epoch": 99, "global_step": 39100, "pytorch-lightning_version": "2.0.2", "state_dict": state_dict,
            "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": progress}},
            "callbacks": {"LearningRateMonitor": {}}, "optimizer_states": [_sgd(model)],
            "lr_schedulers": [{"base_lrs": [0.1], "last_epoch": 99}], **extra}


# ----------------------------------------------------------------------------- the peers' models


class SoloMethod(nn.Module):
    """solo-learn's BaseMethod (solo/methods/base.py): backbone without fc, online classifier; a projector."""

    def __init__(self, net: nn.Module, cifar: bool = False) -> None:
        super().__init__()
        self.backbone = backbone(net)
        if cifar:  # solo/methods/base.py: the CIFAR stem
            self.backbone.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
            self.backbone.maxpool = nn.Identity()
        self.classifier = nn.Linear(512, 10)
        self.projector = nn.Sequential(nn.Linear(512, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 32))
        self.momentum_backbone = backbone(resnet18(7))  # BaseMomentumMethod: other weights, same names


class LightlyBenchmark(nn.Module):
    """lightly benchmarks/imagenet/resnet50/simclr.py: ``resnet.fc = Identity(); self.backbone = resnet``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone(net)
        self.projection_head = nn.Sequential(nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 32))
        self.online_classifier = nn.Module()
        self.online_classifier.classification_head = nn.Linear(512, 1000)


class LightlyExample(nn.Module):
    """lightly examples/pytorch_lightning/simclr.py: ``nn.Sequential(*list(resnet.children())[:-1])``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.backbone = nn.Sequential(*list(copy.deepcopy(net).children())[:-1])
        self.projection_head = nn.Sequential(nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 32))

    def features(self, x):
        return self.backbone(x).flatten(start_dim=1)


class VisslTrunk(nn.Module):
    """VISSL's ResNeXt trunk (vissl/models/trunks/resnext.py): torchvision layers in ``_feature_blocks``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        net = copy.deepcopy(net)
        names = ["conv1", "bn1", "conv1_relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"]
        mods = [net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4, net.avgpool]
        self._feature_blocks = nn.ModuleDict([*zip(names, mods), ("flatten", nn.Flatten(1))])

    def forward(self, x):
        for block in self._feature_blocks.values():
            x = block(x)
        return x


class VicregResNet(nn.Module):
    """facebookresearch/vicreg resnet.py: a ConstantPad2d(1) before a padding-2 conv1, no fc."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        net = copy.deepcopy(net)
        self.padding = nn.ConstantPad2d(1, 0.0)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=2, bias=False)
        self.conv1.weight.data.copy_(net.conv1.weight.data)
        self.bn1, self.relu, self.maxpool = net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.avgpool = net.avgpool

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.padding(x)))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


class WithProjector(nn.Module):
    """VICReg (main_vicreg.py) and Barlow Twins (main.py): ``backbone`` and ``projector`` (+ Barlow's ``bn``)."""

    def __init__(self, trunk: nn.Module, barlow: bool = False) -> None:
        super().__init__()
        self.backbone = trunk
        self.projector = nn.Sequential(nn.Linear(512, 64, bias=False), nn.BatchNorm1d(64), nn.ReLU(),
                                       nn.Linear(64, 32, bias=False))
        if barlow:
            self.bn = nn.BatchNorm1d(32, affine=False)


class MultiCropWrapper(nn.Module):
    """DINO utils.MultiCropWrapper: ``backbone.fc, backbone.head = Identity, Identity`` plus a head."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        net = copy.deepcopy(net)
        net.fc, net.head = nn.Identity(), nn.Identity()
        self.backbone = net
        self.head = nn.Sequential(nn.Linear(512, 64), nn.GELU(), nn.Linear(64, 256))


def _with_fc(net: nn.Module, fc: nn.Module) -> nn.Module:
    net = copy.deepcopy(net)
    net.fc = fc
    return net


class MoCoV2(nn.Module):
    """moco/builder.py (mlp=True): encoder_q/encoder_k with an MLP ``fc``, and the queue buffers."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.encoder_q = _with_fc(net, nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 128)))
        self.encoder_k = _with_fc(resnet18(5), nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 128)))
        self.register_buffer("queue", torch.randn(128, 64))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))


def _mocov3_mlp(d_in: int, d_hidden: int, d_out: int, last_bn: bool = True) -> nn.Sequential:
    """moco-v3 moco/builder.py MoCo._build_mlp with two layers."""
    layers = [nn.Linear(d_in, d_hidden, bias=False), nn.BatchNorm1d(d_hidden), nn.ReLU(inplace=True),
              nn.Linear(d_hidden, d_out, bias=False)]
    return nn.Sequential(*layers, *([nn.BatchNorm1d(d_out, affine=False)] if last_bn else []))


class MoCoV3(nn.Module):
    """moco-v3 MoCo_ResNet: base_encoder/momentum_encoder with an MLP ``fc``, and a predictor."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.base_encoder = _with_fc(net, _mocov3_mlp(512, 64, 32))
        self.momentum_encoder = _with_fc(resnet18(6), _mocov3_mlp(512, 64, 32))
        self.predictor = _mocov3_mlp(32, 64, 32, last_bn=False)


# ----------------------------------------------------------------------------- saving as each peer does


def exclude_bias_and_norm(p):
    return p.ndim == 1


def save_solo_learn(net, path, monkeypatch):
    m = SoloMethod(net)
    torch.save(_lightning(m.state_dict(), m), path / "simclr-imagenet-ep=99.ckpt")
    return path / "simclr-imagenet-ep=99.ckpt", m.backbone


def save_lightly_benchmark(net, path, monkeypatch):
    m = LightlyBenchmark(net)
    ckpt = _lightning(m.state_dict(), m, hparams_name="kwargs",
                      hyper_parameters={"batch_size_per_device": 128, "num_classes": 1000})
    torch.save(ckpt, path / "epoch=99-step=500400.ckpt")
    return path / "epoch=99-step=500400.ckpt", m.backbone


def save_lightly_example(net, path, monkeypatch):
    m = LightlyExample(net)
    torch.save(_lightning(m.state_dict(), m), path / "epoch=9-step=10.ckpt")
    return path / "epoch=9-step=10.ckpt", m.features


def save_vissl(net, path, monkeypatch):
    trunk, heads = VisslTrunk(net), nn.ModuleList([nn.Sequential(nn.Linear(512, 128))])
    model_state = {"model": {"trunk": trunk.state_dict(), "heads": heads.state_dict()},
                   "meta": {"trunk": {}, "heads": []}}  # vissl/models/base_ssl_model.py get_classy_state
    classy = {"train": True, "base_model": model_state, "meters": [], "optimizer": _sgd(trunk),
              "phase_idx": 104, "train_phase_idx": 104, "num_updates": 500000, "losses": [], "hooks": {}}
    ckpt = {"phase_idx": 104, "iteration": 500000, "loss": {}, "iteration_num": 500000, "train_phase_idx": 104,
            "classy_state_dict": classy}  # vissl/hooks/log_hooks.py checkpoint_content
    torch.save(ckpt, path / "model_final_checkpoint_phase104.torch")
    return path / "model_final_checkpoint_phase104.torch", trunk


def save_vicreg_backbone(net, path, monkeypatch):
    trunk = VicregResNet(net)
    torch.save(trunk.state_dict(), path / "resnet50.pth")  # main_vicreg.py: model.module.backbone.state_dict()
    return path / "resnet50.pth", trunk


def save_vicreg_full(net, path, monkeypatch):
    fn = copy.copy(exclude_bias_and_norm)  # pickled by reference, as main_vicreg.py run as a script does
    fn.__module__, fn.__qualname__ = "__main__", "exclude_bias_and_norm"
    monkeypatch.setattr(sys.modules["__main__"], "exclude_bias_and_norm", fn, raising=False)
    model = DDP(WithProjector(VicregResNet(net)))
    state = {"epoch": 100, "model": model.state_dict(),
             "optimizer": _sgd(model, weight_decay_filter=fn, lars_adaptation_filter=fn, eta=0.001)}
    torch.save(state, path / "model.pth")
    monkeypatch.delattr(sys.modules["__main__"], "exclude_bias_and_norm")  # the reader has no such function
    return path / "model.pth", model.module.backbone


def save_barlowtwins_backbone(net, path, monkeypatch):
    trunk = backbone(net)  # main.py: torchvision resnet50 with fc = Identity
    torch.save(trunk.state_dict(), path / "resnet50.pth")
    return path / "resnet50.pth", trunk


def save_barlowtwins_full(net, path, monkeypatch):
    model = DDP(WithProjector(backbone(net), barlow=True))
    state = {"epoch": 1000, "model": model.state_dict(),
             "optimizer": _sgd(model, weight_decay_filter=True, lars_adaptation_filter=True, eta=0.001)}
    torch.save(state, path / "checkpoint.pth")
    return path / "checkpoint.pth", model.module.backbone


def _dino(net, ddp_teacher: bool) -> tuple[dict, nn.Module]:
    student, teacher = DDP(MultiCropWrapper(resnet18(3))), MultiCropWrapper(net)
    teacher = DDP(teacher) if ddp_teacher else teacher  # main_dino.py: DDP only when there are batch norms
    args = argparse.Namespace(arch="resnet18", out_dim=256, momentum_teacher=0.996, epochs=100, lr=0.0005,
                              global_crops_scale=(0.4, 1.0), data_path="/path/to/imagenet/train", use_fp16=True)
    save_dict = {"student": student.state_dict(), "teacher": teacher.state_dict(), "optimizer": _sgd(student),
                 "epoch": 100, "args": args, "dino_loss": {"center": torch.zeros(1, 256)}}
    return save_dict, (teacher.module if ddp_teacher else teacher).backbone


def save_dino(net, path, monkeypatch):
    save_dict, b = _dino(net, ddp_teacher=True)
    torch.save(save_dict, path / "checkpoint.pth")
    return path / "checkpoint.pth", b


def save_dino_vit_style(net, path, monkeypatch):
    save_dict, b = _dino(net, ddp_teacher=False)
    torch.save(save_dict, path / "checkpoint0100.pth")
    return path / "checkpoint0100.pth", b


def save_moco_v2(net, path, monkeypatch):
    model = DDP(MoCoV2(net))
    torch.save({"epoch": 200, "arch": "resnet18", "state_dict": model.state_dict(), "optimizer": _sgd(model)},
               path / "checkpoint_0199.pth.tar")
    return path / "checkpoint_0199.pth.tar", backbone(net)


def save_moco_v3(net, path, monkeypatch):
    model = DDP(MoCoV3(net))
    scaler = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
              "_growth_tracker": 0}  # torch.cuda.amp.GradScaler().state_dict()
    torch.save({"epoch": 300, "arch": "resnet18", "state_dict": model.state_dict(), "optimizer": _sgd(model),
                "scaler": scaler}, path / "checkpoint_0299.pth.tar")
    return path / "checkpoint_0299.pth.tar", backbone(net)


def save_torchvision(net, path, monkeypatch):
    torch.save(net.state_dict(), path / "resnet18-f37072fd.pth")
    return path / "resnet18-f37072fd.pth", backbone(net)


def save_ddp_state_dict(net, path, monkeypatch):
    torch.save(DDP(backbone(net)).state_dict(), path / "ddp.pth")
    return path / "ddp.pth", backbone(net)


# name -> (saver, format detected, prefix stripped, keys of the file the model has not)
PEERS = {
    "solo-learn": (save_solo_learn, "solo-learn", "state_dict.backbone.", ()),
    "lightly-benchmark": (save_lightly_benchmark, "lightly", "state_dict.backbone.", ()),
    "lightly-example": (save_lightly_example, "lightly", "state_dict.backbone.", ()),
    "vissl": (save_vissl, "vissl", "classy_state_dict.base_model.model.trunk._feature_blocks.", ()),
    "vicreg-backbone": (save_vicreg_backbone, "state_dict", "", ()),
    "vicreg-full": (save_vicreg_full, "vicreg_barlowtwins", "model.module.backbone.", ()),
    "barlowtwins-backbone": (save_barlowtwins_backbone, "state_dict", "", ()),
    "barlowtwins-full": (save_barlowtwins_full, "vicreg_barlowtwins", "model.module.backbone.", ()),
    "dino": (save_dino, "dino", "teacher.module.backbone.", ()),
    "dino-vit-style-teacher": (save_dino_vit_style, "dino", "teacher.backbone.", ()),
    "moco-v2": (save_moco_v2, "moco", "state_dict.module.encoder_q.",
                ("fc.0.weight", "fc.0.bias", "fc.2.weight", "fc.2.bias")),
    "moco-v3": (save_moco_v3, "mocov3", "state_dict.module.base_encoder.",
                ("fc.0.weight", "fc.1.weight", "fc.1.bias", "fc.1.running_mean", "fc.1.running_var",
                 "fc.1.num_batches_tracked", "fc.3.weight", "fc.4.running_mean", "fc.4.running_var",
                 "fc.4.num_batches_tracked")),
    "torchvision": (save_torchvision, "state_dict", "", ("fc.weight", "fc.bias")),
    "ddp-state-dict": (save_ddp_state_dict, "state_dict", "module.", ()),
}


@pytest.mark.parametrize("peer", list(PEERS))
def test_peer_checkpoint_gives_the_source_features(tmp_path, monkeypatch, source, x, peer):
    save, fmt, prefix, unexpected = PEERS[peer]
    path, reference = save(source, tmp_path, monkeypatch)
    with torch.no_grad():
        want = reference(x)
    model, info = load_encoder(path, ARCH, None, 3)
    with torch.no_grad():
        got = model(x)
    assert got.shape == (4, 512) and torch.equal(got, want)
    assert (info.format, info.key_prefix, info.unexpected) == (fmt, prefix, unexpected)
    assert info.missing == () and info.loaded == len(model.state_dict()) and info.in_channels == 3
    assert "\n" not in info.report() and fmt in info.report()
    assert info.to_record()["n_unexpected"] == len(unexpected)


def test_every_layout_is_exercised():
    tested = {fmt for _, fmt, _, _ in PEERS.values()} | {"sslbench", "lightning"}  # test_eval, below
    assert {layout.name for layout in LAYOUTS} <= tested


def test_plain_lightning_checkpoint(tmp_path, source, x):
    class Method(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.head = backbone(source), nn.Linear(512, 8)

    m = Method()
    torch.save(_lightning(m.state_dict(), m), tmp_path / "last.ckpt")
    model, info = load_encoder(tmp_path / "last.ckpt", ARCH, None, 3)
    assert info.format == "lightning" and info.ignored == 2
    assert torch.equal(model(x), m.backbone(x))


def test_solo_learn_cifar_stem_keeps_its_padding(tmp_path, monkeypatch, source):
    m = SoloMethod(source, cifar=True)
    torch.save(_lightning(m.state_dict(), m), tmp_path / "byol-cifar10.ckpt")
    model, info = load_encoder(tmp_path / "byol-cifar10.ckpt", "resnet18", None, 3)  # sslbench's CIFAR ResNet-18
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), m.backbone.eval()(x))
    assert info.format == "solo-learn" and any("padding 2" in n for n in info.notes) and "padding 2" in info.report()
    assert info.ignored > 0  # projector, classifier and the momentum backbone are left out


def test_dino_student_by_key_prefix(tmp_path, monkeypatch, source, x):
    path, _ = save_dino(source, tmp_path, monkeypatch)
    model, info = load_encoder(path, ARCH, None, 3, key_prefix="student.module.backbone.")
    assert info.format == "key_prefix" and info.key_prefix == "student.module.backbone."
    assert torch.equal(model(x), backbone(resnet18(3))(x))


def test_unknown_layout_with_one_fitting_prefix_is_found_and_reported(tmp_path, source, x):
    torch.save({"meta": {"epoch": 3}, "net": {"encoder": backbone(source).state_dict()}}, tmp_path / "own.pt")
    model, info = load_encoder(tmp_path / "own.pt", ARCH, None, 3)
    assert (info.format, info.key_prefix) == ("discovered_prefix", "net.encoder.")
    assert torch.equal(model(x), backbone(source)(x)) and "'net.encoder.'" in info.report()


def test_two_fitting_prefixes_are_refused(tmp_path, source):
    torch.save({"a": backbone(source).state_dict(), "b": backbone(resnet18(2)).state_dict()}, tmp_path / "two.pt")
    with pytest.raises(SslbenchError, match=r"several sets of weights fit the model, under 'a\.', 'b\.'; "
                                            "choose one with --key-prefix"):
        load_encoder(tmp_path / "two.pt", ARCH, None, 3)


# ----------------------------------------------------------------------------- refusals, one line each


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and msg.strip() == msg
    return msg


def _no_layer4(net):
    return {k: v for k, v in backbone(net).state_dict().items() if not k.startswith("layer4.")}


@pytest.mark.parametrize(
    "make, arch, match",
    [
        (lambda p, net: torch.save(net.state_dict(), p), "resnet18",
         ["conv1.weight has shape (64, 3, 7, 7) in the file but (64, 3, 3, 3)", "an ImageNet stem (7x7)"]),
        (lambda p, net: torch.save({"state_dict": _no_layer4(net)}, p), ARCH,
         ["is not a state dict of backbone 'torchvision:resnet18': missing keys layer4.0.conv1.weight",
          "read as state_dict under 'state_dict.'", "--key-prefix"]),
        (lambda p, net: torch.save(backbone(net).state_dict(), p), "torchvision:resnet34",
         ["missing keys layer1.2.conv1.weight"]),
        (lambda p, net: p.write_bytes(b""), ARCH, ["is empty (0 bytes)"]),
        (lambda p, net: torch.save({0: torch.zeros(1)}, p), ARCH, ["has key 0 (int) at its top level"]),
        (lambda p, net: torch.save({"state_dict": {**backbone(net).state_dict(), 7: torch.zeros(1)}}, p), ARCH,
         ["the weights under 'state_dict.' include a non-string key ('state_dict.7')"]),
        (lambda p, net: torch.save([backbone(net).state_dict()], p), ARCH, ["holds a list, not a state dict"]),
        (lambda p, net: torch.save({"teacher": {}, "args": Evil()}, p), ARCH, ["refusing to load", "Unsupported"]),
        (lambda p, net: torch.save({"model": backbone(net).state_dict()}, p), "torchvision:resnet5O",
         ["unknown torchvision model 'resnet5O'; did you mean 'resnet50'"]),
        (lambda p, net: torch.save(backbone(net).state_dict(), p), None, ["name its architecture with --arch"]),
    ],
    ids=["wrong_stem", "missing_layer4", "other_depth", "empty_file", "int_key", "nested_int_key", "a_list",
         "code_in_metadata", "unknown_torchvision", "no_arch"],
)
def test_bad_checkpoint_is_one_line(tmp_path, source, make, arch, match):
    path = tmp_path / "enc.pt"
    make(path, source)
    with pytest.raises(SslbenchError) as e:
        load_encoder(path, arch, None, 3)
    msg = _one_line(e)
    for m in match:
        assert m in msg


class Evil:
    """Unpickling this would run code."""

    def __reduce__(self):
        return (builtins.exec, ("raise SystemExit('pwned')",))


def test_a_directory_names_its_files(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.ckpt").write_bytes(b"x")
    with pytest.raises(SslbenchError) as e:
        load_encoder(tmp_path / "run", ARCH, None, 3)
    assert "is a directory, not a file; pass one of the files in it: last.ckpt" in _one_line(e)
    with pytest.raises(SslbenchError, match="does not exist"):
        load_encoder(tmp_path / "nope.pt", ARCH, None, 3)


def test_wrong_key_prefix_names_the_top_level(tmp_path, source):
    torch.save({"epoch": 1, "state_dict": backbone(source).state_dict()}, tmp_path / "c.pt")
    with pytest.raises(SslbenchError) as e:
        load_encoder(tmp_path / "c.pt", ARCH, None, 3, key_prefix="model.")
    assert "--key-prefix 'model.' matches no tensor" in _one_line(e) and "epoch, state_dict" in str(e.value)


def test_missing_batchnorm_counters_are_reported_not_refused(tmp_path, source, x):
    state = {k: v for k, v in backbone(source).state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")  # torch < 0.4.1 wrote no num_batches_tracked
    model, info = load_encoder(tmp_path / "old.pth", ARCH, None, 3)
    assert torch.equal(model(x), backbone(source)(x))
    assert len(info.missing) == 20 and all(k.endswith("num_batches_tracked") for k in info.missing)
    assert "missing 20 (bn1.num_batches_tracked" in info.report()


def test_rgb_checkpoint_of_an_own_backbone_on_grey_data(tmp_path):
    torch.manual_seed(0)
    net = ConvNet(3, 4).eval()
    torch.save(net.state_dict(), tmp_path / "rgb.pt")
    model, info = load_encoder(tmp_path / "rgb.pt", "convnet", 4, 1)
    assert info.in_channels == 3 and info.width == 4
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(model(x), net(x))


def test_torchvision_and_timm_names(monkeypatch):
    m = build_backbone("torchvision:resnet50", 1, None)
    assert m.out_dim == 2048 and isinstance(m.fc, nn.Identity) and isinstance(m.maxpool, nn.MaxPool2d)
    assert m.conv1.kernel_size == (7, 7) and m.in_channels == 3
    assert default_image_size("torchvision:resnet50") == 224 and default_image_size("resnet18") is None
    with pytest.raises(SslbenchError, match="--width applies to sslbench's own backbones"):
        build_backbone("torchvision:resnet50", 3, 64)
    monkeypatch.setitem(sys.modules, "timm", None)  # not installed
    with pytest.raises(SslbenchError, match=r"needs timm, an optional extra: pip install 'sslbench\[timm\]'"):
        build_backbone("timm:resnet18", 3, None)
    made = []
    fake = types.SimpleNamespace(
        list_models=lambda: ["resnet18", "vit_small_patch16_224"],
        create_model=lambda name, pretrained, num_classes: made.append((name, pretrained, num_classes))
        or types.SimpleNamespace(num_features=384, pretrained_cfg={"input_size": (3, 224, 224)}))
    monkeypatch.setitem(sys.modules, "timm", fake)
    assert build_backbone("timm:vit_small_patch16_224", 3, None).out_dim == 384
    assert made == [("vit_small_patch16_224", False, 0)]
    with pytest.raises(SslbenchError, match="unknown timm model 'resnet81'; did you mean 'resnet18'"):
        build_backbone("timm:resnet81", 3, None)


# ----------------------------------------------------------------------------- TorchScript


class TupleOut(nn.Module):
    def forward(self, x):
        return x.mean((2, 3)), x.amax((2, 3))


class Raises(nn.Module):
    def forward(self, x):
        if x.shape[1] == 1:
            raise ValueError("this encoder needs RGB images")
        return x.mean((2, 3))


def _data(channels=1, size=8, n=6):
    gen = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=gen)
    labels = torch.arange(n) % 2
    return ImageData("tiny", imgs, labels, imgs.clone(), labels.clone(), 2, (0.5,) * channels, (0.25,) * channels,
                     "0" * 64, "test")


def _script(module, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(module).save(str(path))


@pytest.mark.parametrize(
    "module, match",
    [(TupleOut(), "it returned a tuple of 2 ((6, 1), (6, 1)); sslbench needs one (B, D) tensor"),
     (Raises(), "failed on tiny images of shape (B, 1, 8, 8): builtins.ValueError: this encoder needs RGB images")],
    ids=["tuple", "raises"],
)
def test_torchscript_forward_failures_are_one_line(tmp_path, module, match):
    _script(module, tmp_path / "ts.pt")
    enc, info = load_encoder(tmp_path / "ts.pt", None, None, 1)
    assert info.format == "torchscript"
    with pytest.raises(SslbenchError) as e:
        encoder_features(enc, _data(), "cpu", tmp_path / "ts.pt")
    assert match in _one_line(e)


def test_fake_torchscript_says_why(tmp_path):
    with zipfile.ZipFile(tmp_path / "fake.pt", "w") as z:
        z.writestr("archive/constants.pkl", b"not a pickle")
    with pytest.raises(SslbenchError) as e:
        load_encoder(tmp_path / "fake.pt", None, None, 3)
    msg = _one_line(e)
    assert "cannot be loaded: it is a zip with constants.pkl but not a TorchScript archive" in msg
    assert msg.endswith(")") and "Could this error message" not in msg


def test_torchscript_records_its_input_channels(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(ConvNet(3, 4).eval(), torch.zeros(1, 3, 8, 8)).save(str(tmp_path / "rgb.pt"))
    _, info = load_encoder(tmp_path / "rgb.pt", None, None, 1)
    assert info.in_channels == 3 and info["format"] == "torchscript"


# ----------------------------------------------------------------------------- inputs


def test_default_input_is_sslbench_normalisation_exactly():
    data = _data(channels=3)
    out = InputSpec().resolve(3, data.mean, data.std)(data.train_images)
    assert torch.equal(out, normalize(data.train_images, data.mean, data.std))


def test_imagenet_statistics_and_grey_to_rgb():
    grey = torch.full((1, 1, 4, 4), 255, dtype=torch.uint8)
    spec = InputSpec(normalize="imagenet", channels=3).resolve(1, (0.5,), (0.25,))
    out = spec(grey)
    assert out.shape == (1, 3, 4, 4) and spec.replicates_grey
    want = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]  # a white pixel
    assert torch.allclose(out[0, :, 0, 0], torch.tensor(want))
    rec = spec.to_record()
    assert rec["grey_to_rgb"] and rec["normalize"] == "imagenet" and rec["mean"] == list(IMAGENET_MEAN)


def test_resize_then_centre_crop():
    img = torch.arange(32 * 48, dtype=torch.float32).view(1, 1, 32, 48)
    spec = InputSpec(image_size=32, normalize="none").resolve(1, (0.5,), (0.25,))
    assert torch.equal(spec.from_unit(img), img[..., 8:40])  # shorter side already 32: only the crop
    up = InputSpec(image_size=64, normalize="none").resolve(1, (0.5,), (0.25,))
    flat = torch.full((2, 1, 32, 48), 0.25)
    out = up.from_unit(flat)
    assert out.shape == (2, 1, 64, 64) and torch.allclose(out, torch.tensor(0.25))  # a constant image stays constant
    big = InputSpec(image_size=224, resize=256).resolve(3, (0.5,) * 3, (0.25,) * 3)
    assert big(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)).shape == (1, 3, 224, 224)
    assert big.to_record()["resize"] == 256 and big.to_record()["interpolation"] == "bilinear-antialias"


@pytest.mark.parametrize(
    "text, want",
    [("imagenet", "imagenet"), ("Dataset", "dataset"), ("none", "none"), ("0.5,0.25", ((0.5,), (0.25,))),
     ("0.1,0.2,0.3,0.4,0.5,0.6", ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6)))],
)
def test_parse_normalize(text, want):
    assert parse_normalize(text) == want


@pytest.mark.parametrize("text, match", [("imgnet", "use dataset, imagenet, none"), ("0.5", "an even count"),
                                         ("0.5,0", "every std must be positive")])
def test_parse_normalize_refuses(text, match):
    with pytest.raises(SslbenchError, match=match):
        parse_normalize(text)


def test_input_spec_refusals():
    with pytest.raises(SslbenchError, match="takes 3-channel images but tiny has 2"):
        InputSpec(channels=3).resolve(2, (0.5,) * 2, (0.2,) * 2, "tiny")
    with pytest.raises(SslbenchError, match="2 mean values for a 3-channel encoder"):
        InputSpec(normalize=((0.1, 0.2), (0.3, 0.4))).resolve(3, (0.5,) * 3, (0.2,) * 3)
    with pytest.raises(SslbenchError, match="needs an --image-size no larger"):
        InputSpec(image_size=224, resize=200)


def test_encoder_features_with_an_input_spec(tmp_path, source):
    data = _data(channels=1, size=16, n=4)
    model = backbone(source)
    spec = InputSpec(image_size=32, normalize="imagenet", channels=3)
    fs = encoder_features(model, data, "cpu", tmp_path / "enc.pt", spec)
    with torch.no_grad():
        want = model(spec.resolve(1, data.mean, data.std)(data.train_images)).numpy()
    assert fs.train.x.shape == (4, 512)
    np.testing.assert_allclose(fs.train.x, want, rtol=1e-5, atol=1e-5)  # channels_last on the CPU: same math


def test_flatten_marks_non_string_keys():
    flat, odd = flatten({"a": {"b": torch.zeros(1), 3: {"c": 1}}, "d": {}})
    assert set(flat) == {"a.b", "a.3.c", "d"} and odd == {"a.3.c"}
