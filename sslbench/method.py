"""The method contract: a short registered recipe on the one shared training loop.

A :class:`Method` says how to build the trainable model around a backbone
(projector, predictor, target network), which frozen loss config it uses (and,
for methods with a momentum target, which target-update config), its two view
recipes and its default hyperparameters per preset. The training loop
(:mod:`sslbench.train`) owns everything else. A variant is the same recipe with
changed loss or target fields (:func:`derive_variant`), never a flag inside
another loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import torch
from torch import nn

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
class ViewConfig:
    """Strength of each augmentation of one view.

    Attributes:
        crop_scale: Range of the crop area as a fraction of the image.
        crop_ratio: Range of the crop aspect ratio (log-uniform).
        flip_p: Probability of a horizontal flip.
        jitter_p: Probability of applying colour jitter.
        brightness: Brightness factor range ``1 +- brightness``.
        contrast: Contrast factor range ``1 +- contrast``.
        saturation: Saturation factor range ``1 +- saturation`` (RGB only).
        grayscale_p: Probability of grayscale (RGB only).
        blur_p: Probability of a Gaussian blur, kernel about 10% of the side.
        blur_sigma: Range of the blur sigma, in pixels.
        solarize_p: Probability of solarisation at threshold 0.5.
    """

    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0


def added_field(default: Any, rule: Any = None) -> Any:
    """A recipe field added after runs were recorded; its default is the behaviour before it.

    At its default it is left out of the run identity (:func:`identity_fields`), so
    runs recorded before the field existed stay current and are not retrained.

    Args:
        default: The value that reproduces training before the field existed.
        rule: The allowed values of a loss or target field (a :class:`sslbench.config.Bound`),
            checked where a config file, a variant or a grid axis sets it
            (:func:`sslbench.config.field_rules`); ``None`` when unchecked.
    """
    return field(default=default, metadata={"added": True, **({"rule": rule} if rule is not None else {})})


def identity_fields(config: Any) -> dict[str, Any]:
    """A recipe dataclass as its identity records it: every field, less :func:`added_field` ones at their default."""
    doc = dataclasses.asdict(config)
    for f in dataclasses.fields(config):
        if f.metadata.get("added") and getattr(config, f.name) == f.default:
            del doc[f.name]
    return doc


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
        decay_norm_and_bias: Apply weight decay to biases and norm parameters too (the
            official SimSiam code decays every parameter); by default they are exempt, as
            in BYOL, VICReg and Barlow Twins.
        per_view_forward: Pass each view through the network on its own, so batch norm
            normalises each view with its own statistics (the official VICReg, Barlow
            Twins and SimSiam code); by default both views go through as one batch.
        warmup_epochs: Linear warmup length, then a cosine decay.
        final_lr_ratio: Learning rate at the end as a fraction of the peak.
        probe_images: Size of the fixed, un-augmented probe batch on which RankMe and
            the std of l2-normalised projector outputs are logged after every epoch.
        stop_on_collapse: Stop when the probe reads complete collapse (the run is
            recorded as ``collapsed`` with its epoch and still evaluated).
        pred_lr_scale: The predictor's learning rate as a multiple of the others' (its own
            optimiser groups), for methods with a predictor (SimSiam: of its fixed lr;
            BYOL: of the schedule). 1 leaves the optimiser as it was.
        early_call_every: Read the collapse monitor every this many optimiser steps and
            stop training when :class:`sslbench.early_call.EarlyCallRule` calls collapse
            (recorded as ``stopped_early``, never silently); 0 never calls.
        early_call_status: The mildest monitor status the rule counts as collapse:
            ``complete``, or ``dimensional`` (which counts complete too).
        early_call_consecutive: Readings in a row the rule needs.
        early_call_after: Readings before this share of training are ignored.
        early_call_stalled: Count a collapse reading only when the outputs stopped
            spreading out (:attr:`sslbench.early_call.EarlyCallRule.stalled`); unset
            counts every one.
    """

    epochs: int = 10
    batch_size: int = 256
    optimizer: Literal["sgd", "lars", "adamw"] = "sgd"
    lr: float = 0.05
    weight_decay: float = 1e-4
    momentum: float = 0.9
    lars_eta: float = added_field(0.02)
    lars_clip_lr: bool = added_field(False)
    decay_norm_and_bias: bool = added_field(False)
    per_view_forward: bool = added_field(False)
    warmup_epochs: float = 0.0
    final_lr_ratio: float = 0.0
    probe_images: int = 512
    stop_on_collapse: bool = True
    pred_lr_scale: float = added_field(1.0)
    early_call_every: int = added_field(0)
    early_call_status: Literal["complete", "dimensional"] = added_field("complete")
    early_call_consecutive: int = added_field(2)
    early_call_after: float = added_field(0.02)
    early_call_stalled: float | None = added_field(None)


EncoderKind = Literal["trained", "random_init", "raw_pixels"]


@dataclass(frozen=True)
class Method:
    """A pretraining recipe (or a reference encoder).

    Attributes:
        name: Registry name.
        summary: One line for ``sslbench ls methods``.
        paper: Citation.
        build: ``(backbone, heads, loss_config) -> nn.Module`` (with a ``target``:
            ``(backbone, heads, loss_config, target_config)``) with attributes
            ``backbone`` and ``projector`` whose ``forward(v1, v2)``
            returns a :class:`StepOutput`; it may define ``param_groups()`` (dicts
            with ``params`` and optional ``fixed_lr``/``no_decay`` flags) and
            ``after_step(progress)`` (EMA updates). ``None`` for floors.
        loss: Frozen loss config dataclass.
        target: Frozen config of the target-network update (BYOL's EMA rates), or ``None``.
        heads: Head sizes (``proj_dim``, ``pred_hidden``, ...), per method.
        train: Default :class:`TrainConfig`.
        presets: Per preset name, overrides ``{"train": {...}, "heads": {...}, "views": {...}}``
            (``views``: :class:`ViewConfig` fields changed in both views).
        views: The two view recipes.
        base: For a variant, the method it changes.
        encoder: ``trained`` for SSL methods, else which reference encoder.
        has_predictor: Whether its model has a ``predictor`` module (SimSiam, BYOL), whose
            learning rate ``TrainConfig.pred_lr_scale`` scales.
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
    target: Any = None
    has_predictor: bool = False

    def build_model(self, backbone: nn.Module, heads: dict[str, int], per_view: bool = False) -> nn.Module:
        """The trainable model around ``backbone`` (see ``build``).

        Args:
            backbone: The encoder to train.
            heads: Head sizes.
            per_view: Forward each view on its own (``TrainConfig.per_view_forward``);
                the model must declare a ``per_view`` attribute to support it.

        Raises:
            SslbenchError: for a floor, or ``per_view`` on a model without the attribute.
        """
        if self.build is None:
            raise SslbenchError(f"{self.name!r} is a floor: it has no model to train")
        model = self.build(backbone, heads, self.loss) if self.target is None else self.build(
            backbone, heads, self.loss, self.target)
        if per_view:
            if not hasattr(model, "per_view"):
                raise SslbenchError(f"method {self.name!r} has no per-view forward; set per_view_forward = false")
            model.per_view = True
        return model

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


def variant_changes(method: Method, base: Method | None) -> dict[str, Any]:
    """The fields a variant changes from its base (for results): loss fields by name,
    target-update fields as ``target.<name>``; ``{}`` for a method that is no variant."""
    if base is None:
        return {}
    out = _changed(method.loss, base.loss)
    out.update({f"target.{k}": v for k, v in _changed(method.target, base.target).items()})
    return out


def _changed(cfg: Any, base_cfg: Any) -> dict[str, Any]:
    if cfg is None or base_cfg is None:
        return {}
    a, b = dataclasses.asdict(cfg), dataclasses.asdict(base_cfg)
    return {k: v for k, v in a.items() if b.get(k) != v}


def _replace_fields(cfg: Any, changes: dict[str, Any], what: str, base: Method) -> Any:
    """``cfg`` with ``changes``, checking every name against its fields."""
    if not changes:
        return cfg
    if cfg is None:
        raise SslbenchError(f"{base.name!r} has no {what} to change")
    known = {f.name for f in dataclasses.fields(cfg)}
    for key in changes:
        if key not in known:
            raise did_you_mean(key, known, f"{what} field of {base.name!r}")
    return dataclasses.replace(cfg, **changes)


def derive_variant(base: Method, name: str, summary: str, *, loss: dict[str, Any] | None = None,
                   target: dict[str, Any] | None = None) -> Method:
    """A variant: ``base`` with the given loss and/or target-update fields changed, nothing else.

    Args:
        base: The method it changes.
        name: Registry name of the variant.
        summary: One line for ``sslbench ls``.
        loss: Loss-config fields to change (e.g. ``{"var_coeff": 0.0}``).
        target: Target-update fields to change (e.g. BYOL's ``{"tau_base": 0.0}``).

    Raises:
        SslbenchError: for a field the base does not declare, or no change at all.
    """
    if not loss and not target:
        raise SslbenchError(f"variant {name!r} changes nothing in {base.name!r}")
    return dataclasses.replace(
        base, name=name, summary=summary, base=base.name,
        loss=_replace_fields(base.loss, loss or {}, "loss", base),
        target=_replace_fields(base.target, target or {}, "target", base),
    )
