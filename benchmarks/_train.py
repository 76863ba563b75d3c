"""Training-step helpers shared by bench_train_step, bench_simsiam_lightly, bench_augment and bench_flops.

Two ways to time training steps on the same data, views and batch:

- :func:`sslbench_images_per_s` runs sslbench's shared loop
  (:func:`sslbench.train.pretrain`) for two short epochs on ``steps * batch``
  images and reads the second epoch's ``images_per_s`` from ``metrics.jsonl``
  (the loop's own clock: views, forward, backward, optimiser, logging; not the
  per-epoch probe and checkpoint, which happen outside it).
- :func:`bare_images_per_s` runs a hand-written loop: views, forward, backward,
  step, nothing else.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import _common as C
import torch
from torch import nn

from sslbench.augment import TwoViews
from sslbench.backbones import build_backbone
from sslbench.method import Method, TrainConfig
from sslbench.registry import registry
from sslbench.types import ImageData


@dataclass
class Setup:
    """Everything a training step needs, built as ``sslbench run`` builds it."""

    method: Method
    data: ImageData
    views: TwoViews
    cfg: TrainConfig
    heads: dict[str, int]
    width: int

    def model(self, seed: int = 0) -> nn.Module:
        """A fresh model (same initial weights for the same seed)."""
        torch.manual_seed(seed)
        backbone = build_backbone("convnet", self.data.channels, self.width)
        return self.method.build(backbone, self.heads, self.method.loss)

    def backbone(self, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return build_backbone("convnet", self.data.channels, self.width)


def preset_batch(method: str, small: bool) -> int:
    """The batch :func:`setup` uses by default: the ``quick`` preset's (``small``: 64)."""
    from sslbench.presets import QUICK

    return 64 if small else registry("methods").get(method).resolve(QUICK.name)[0].batch_size


def setup(method: str, small: bool, batch: int | None = None, width: int | None = None, steps: int = 20) -> Setup:
    """The ``quick`` preset of ``method`` on Fashion-MNIST (``small``: the ``smoke`` heads, width 8, batch 64).

    Only the first ``steps * batch`` train images are kept (one benchmark epoch).
    """
    from sslbench.presets import QUICK, SMOKE

    m = registry("methods").get(method)
    cfg, heads = m.resolve(SMOKE.name if small else QUICK.name)
    batch = batch or preset_batch(method, small)
    width = width or (SMOKE.width if small else QUICK.width)
    cfg = dataclasses.replace(cfg, batch_size=batch, epochs=2, warmup_epochs=0.0, stop_on_collapse=False,
                              probe_images=min(cfg.probe_images, steps * batch))
    data = C.fashion_mnist(n_train=steps * batch, n_test=256)
    preset = SMOKE if small else QUICK
    views = TwoViews(*m.resolve_views(preset.name, preset.views), mean=data.mean, std=data.std)
    return Setup(m, data, views, cfg, heads, width)


def sslbench_images_per_s(s: Setup, model: nn.Module, seed: int = 0) -> float:
    """Images/s of the second epoch of sslbench's ``pretrain`` on ``s.data`` (fresh run directory)."""
    from sslbench.layout import RunPaths
    from sslbench.train import pretrain
    from sslbench.training_log import read_log

    with tempfile.TemporaryDirectory(prefix="sslbench-bench-") as tmp:
        paths = RunPaths(Path(tmp), "bench", seed)
        out = pretrain(model, s.data, s.views, s.cfg, paths, seed, "cpu")
        if out.status != "finished":
            raise RuntimeError(f"pretrain ended {out.status}: {out.message}")
        rows = read_log(paths.metrics_log)
    return rows[-1].numbers["images_per_s"]


def bare_images_per_s(
    step: Callable[[torch.Tensor, torch.Tensor], None],
    s: Setup,
    steps: int,
    warmup: int = 3,
    channels_last: bool = True,
    seed: int = 0,
) -> float:
    """Images/s of a plain loop: draw a batch, make its two views, call ``step(v1, v2)``.

    The views come from the same :class:`TwoViews` as sslbench's loop, with the
    same generator use, so both sides see the same augmentations.
    """
    gen = torch.Generator().manual_seed(seed)
    images = s.data.train_images
    batch = s.cfg.batch_size
    perm = torch.randperm(images.shape[0], generator=gen)

    def one(i: int) -> None:
        j = i % (images.shape[0] // batch)
        v1, v2 = s.views(images[perm[j * batch : (j + 1) * batch]], gen)
        if channels_last:
            v1 = v1.contiguous(memory_format=torch.channels_last)
            v2 = v2.contiguous(memory_format=torch.channels_last)
        step(v1, v2)

    for i in range(warmup):
        one(i)
    t0 = time.perf_counter()
    for i in range(steps):
        one(i)
    return steps * batch / (time.perf_counter() - t0)


def bare_step_fn(model: nn.Module, optimizer: torch.optim.Optimizer) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """The hand-written step for an sslbench method model: forward, backward, step, EMA hook."""
    after = getattr(model, "after_step", None)
    count = [0]

    def step(v1: torch.Tensor, v2: torch.Tensor) -> None:
        loss = model(v1, v2).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        count[0] += 1
        if after is not None:
            after(min(1.0, count[0] / 1000))

    return step


def prepare(model: nn.Module, channels_last: bool = True) -> nn.Module:
    model.train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model
