"""The method contract: a short registered recipe on the one shared training loop.

A :class:`Method` says how to build the trainable model around a backbone
(projector, predictor, target network), which frozen loss config it uses, its
two view recipes and its default hyperparameters per preset. The training loop
(:mod:`sslbench.train`) owns everything else. A variant is the same recipe with
changed loss fields (:func:`derive_variant`), never a flag inside another loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import torch
from torch import nn

from sslbench.augment import ViewConfig
from sslbench.errors import SslbenchError, did_you_mean


class StepOutput(NamedTuple):
    """What a method's model returns for one batch of two views.

    Attributes:
        loss: Scalar to minimise.
        terms: Named unweighted loss terms, detached or not, for logging.
        z: ``(N, D)`` projector output of view 1 (for the collapse alarm).
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    z: torch.Tensor


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation hyperparameters of one pretraining run.

    Attributes:
        epochs: Passes over the train split.
        batch_size: Images per step (two views each).
        optimizer: ``sgd``, ``lars`` or ``adamw``.
        lr: Base learning rate for a batch of 256; the run uses ``lr * batch_size / 256``.
        weight_decay: L2 weight decay (decoupled for AdamW).
        momentum: SGD/LARS momentum.
        lars_eta: LARS trust coefficient (solo-learn's CIFAR configs: 0.02; the official
            VICReg and Barlow Twins: 0.001).
        lars_clip_lr: Cap LARS's trust ratio at the learning rate, as solo-learn's
            ``clip_lr`` does (its CIFAR configs turn it on); see :class:`sslbench.optim.LARS`.
        warmup_epochs: Linear warmup length, then a cosine decay.
        final_lr_ratio: Learning rate at the end as a fraction of the peak.
        probe_images: Size of the fixed, un-augmented probe batch on which RankMe and
            the std of l2-normalised projector outputs are logged after every epoch.
        stop_on_collapse: Stop when the probe reads complete collapse (the run is
            recorded as ``collapsed`` with its epoch and still evaluated).
    """

    epochs: int = 10
    batch_size: int = 256
    optimizer: Literal["sgd", "lars", "adamw"] = "sgd"
    lr: float = 0.05
    weight_decay: float = 1e-4
    momentum: float = 0.9
    lars_eta: float = 0.02
    lars_clip_lr: bool = False
    warmup_epochs: float = 0.0
    final_lr_ratio: float = 0.0
    probe_images: int = 512
    stop_on_collapse: bool = True


EncoderKind = Literal["trained", "random_init", "raw_pixels"]


@dataclass(frozen=True)
class Method:
    """A pretraining recipe (or a reference encoder).

    Attributes:
        name: Registry name.
        summary: One line for ``sslbench ls methods``.
        paper: Citation.
        build: ``(backbone, heads, loss_config) -> nn.Module`` with attributes
            ``backbone`` and ``projector`` whose ``forward(v1, v2)``
            returns a :class:`StepOutput`; it may define ``param_groups()`` (dicts
            with ``params`` and optional ``fixed_lr``/``no_decay`` flags) and
            ``after_step(progress)`` (EMA updates). ``None`` for reference encoders.
        loss: Frozen loss config dataclass.
        heads: Head sizes (``proj_dim``, ``pred_hidden``, ...), per method.
        train: Default :class:`TrainConfig`.
        presets: Per preset name, overrides ``{"train": {...}, "heads": {...}, "views": {...}}``
            (``views``: :class:`ViewConfig` fields changed in both views).
        views: The two view recipes.
        base: For a variant, the method it changes.
        encoder: ``trained`` for SSL methods, else which reference encoder.
    """

    name: str
    summary: str
    paper: str = ""
    build: Callable[[nn.Module, dict[str, int], Any], nn.Module] | None = None
    loss: Any = None
    heads: dict[str, int] = field(default_factory=dict)
    train: TrainConfig = TrainConfig()
    presets: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    views: tuple[ViewConfig, ViewConfig] = (ViewConfig(), ViewConfig())
    base: str | None = None
    encoder: EncoderKind = "trained"

    def resolve(
        self,
        preset: str,
        train_overrides: dict[str, Any] | None = None,
        heads_overrides: dict[str, int] | None = None,
        epochs: int | None = None,
    ) -> tuple[TrainConfig, dict[str, int]]:
        """Train config and head sizes for ``preset``, then user overrides on top.

        ``epochs`` is the preset's epoch count: it applies under this method's own
        changes for the preset (a method may train longer or shorter there), and
        ``train_overrides`` apply over both. ``heads_overrides`` keys this method's
        heads do not have are ignored (one ``[heads]`` table applies to methods with
        different heads).
        """
        over = self.presets.get(preset, {})
        base = {"epochs": epochs} if epochs else {}
        train = dataclasses.replace(self.train, **{**base, **over.get("train", {}), **(train_overrides or {})})
        heads = {**self.heads, **over.get("heads", {})}
        heads.update({k: v for k, v in (heads_overrides or {}).items() if k in heads})
        return train, heads

    def resolve_views(
        self, preset: str, preset_views: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None
    ) -> tuple[ViewConfig, ViewConfig]:
        """The two view recipes for ``preset``: the method's own, then the preset's
        changes for every method (``preset_views``), this method's changes for the
        preset, and the user's (``overrides``), each applied to both views."""
        changes = {**(preset_views or {}), **self.presets.get(preset, {}).get("views", {}), **(overrides or {})}
        changes = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}
        return (dataclasses.replace(self.views[0], **changes), dataclasses.replace(self.views[1], **changes))


def loss_changes(loss: Any, base_loss: Any) -> dict[str, Any]:
    """Fields of a loss config that differ from the base method's (for results)."""
    if loss is None or base_loss is None:
        return {}
    a, b = dataclasses.asdict(loss), dataclasses.asdict(base_loss)
    return {k: v for k, v in a.items() if b.get(k) != v}


def derive_variant(base: Method, name: str, summary: str, **loss_fields: Any) -> Method:
    """A variant: ``base`` with the given loss-config fields changed, nothing else.

    Raises:
        SslbenchError: for a field the base loss config does not have.
    """
    known = {f.name for f in dataclasses.fields(base.loss)}
    for key in loss_fields:
        if key not in known:
            raise did_you_mean(key, known, f"loss field of {base.name!r}")
    if not loss_fields:
        raise SslbenchError(f"variant {name!r} changes nothing in {base.name!r}")
    return dataclasses.replace(
        base, name=name, summary=summary, loss=dataclasses.replace(base.loss, **loss_fields), base=base.name
    )
