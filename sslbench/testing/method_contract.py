"""Contract checks for pretraining methods, to run on your own method (as :func:`check_protocol` for protocols).

::

    from sslbench.testing import check_method

    def test_my_method_keeps_the_contract():
        check_method(MY_METHOD)

What the contract asks of a trained :class:`~sslbench.method.Method`:

- a summary, a frozen dataclass loss config (and target config, if any), and
  defaults for every built-in preset it is meant to run under;
- ``build_model`` gives a module with ``backbone`` and ``projector`` whose
  ``forward(v1, v2)`` returns a :class:`~sslbench.method.StepOutput`: a finite
  scalar loss, detached named terms and ``z`` of shape ``(N, D)`` detached;
- one optimiser step through the shared loop's optimiser changes the backbone,
  and ``after_step`` (a target update), when present, runs;
- the loss falls over a few steps on a fixed batch of two close views.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from sslbench.backbones import build_backbone
from sslbench.method import Method, StepOutput
from sslbench.optim import build_optimizer

#: Presets every built-in method has defaults for.
PRESETS = ("smoke", "quick", "standard", "cifar10")


def check_method_attributes(method: Method, presets: tuple[str, ...] = PRESETS) -> None:
    """Summary, frozen configs and per-preset defaults are present."""
    who = f"method {method.name!r}"
    assert method.encoder == "trained", f"{who}: only trained methods have a model to check"
    assert method.summary, f"{who}: needs a one-line summary"
    assert method.loss is not None and dataclasses.is_dataclass(method.loss), f"{who}: loss must be a dataclass config"
    for cfg in (method.loss, method.target):
        if cfg is not None:
            params = type(cfg).__dataclass_params__  # type: ignore[attr-defined]
            assert params.frozen, f"{who}: {type(cfg).__name__} must be a frozen dataclass"
    for preset in presets:
        assert preset in method.presets, f"{who} has no {preset} defaults"


def check_step(method: Method, preset: str = "smoke", seed: int = 0) -> None:
    """One step on random views: a well-formed StepOutput, and the optimiser moves the backbone."""
    who = f"method {method.name!r}"
    train, heads = method.resolve(preset)
    torch.manual_seed(seed)
    model = method.build_model(build_backbone("convnet", 1, 4), heads)
    assert hasattr(model, "backbone") and hasattr(model, "projector"), f"{who}: the model needs backbone and projector"
    v1, v2 = torch.randn(16, 1, 8, 8), torch.randn(16, 1, 8, 8)
    out = model(v1, v2)
    assert isinstance(out, StepOutput), f"{who}: forward must return a StepOutput, got {type(out).__name__}"
    assert out.loss.ndim == 0 and torch.isfinite(out.loss), f"{who}: the loss must be a finite scalar, got {out.loss}"
    assert out.z.ndim == 2 and out.z.shape[0] == 16 and not out.z.requires_grad, f"{who}: z must be detached (N, D)"
    assert all(isinstance(k, str) for k in out.terms), f"{who}: terms must be named"
    before = [p.detach().clone() for p in model.backbone.parameters()]
    opt = build_optimizer(model, dataclasses.replace(train, lr=0.1))
    out.loss.backward()
    opt.step()
    if hasattr(model, "after_step"):
        model.after_step(0.5)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.backbone.parameters(), strict=True)), (
        f"{who}: one optimiser step left the backbone unchanged")


def check_loss_decreases(method: Method, preset: str = "smoke", steps: int = 8) -> list[float]:
    """AdamW on a fixed batch of two close views lowers the loss within ``steps`` steps.

    Returns:
        The losses, one per step.
    """
    train, heads = method.resolve(preset)
    torch.manual_seed(0)
    model = method.build_model(build_backbone("convnet", 1, 4), heads)
    opt = build_optimizer(model, dataclasses.replace(train, optimizer="adamw", lr=2e-3, weight_decay=0.0))
    g = torch.Generator().manual_seed(1)
    v1 = torch.randn(32, 1, 8, 8, generator=g)
    v2 = v1 + 0.1 * torch.randn(32, 1, 8, 8, generator=g)
    losses = []
    for step in range(steps):
        out = model(v1, v2)
        losses.append(out.loss.item())
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        if hasattr(model, "after_step"):
            model.after_step(step / steps)
    assert all(math.isfinite(v) for v in losses), f"method {method.name!r}: non-finite loss {losses}"
    assert losses[-1] < losses[0], f"method {method.name!r}: the loss did not fall on a fixed batch: {losses}"
    return losses


def check_method(method: Method, presets: tuple[str, ...] = PRESETS) -> list[str]:
    """Run every method contract check (see the module docstring).

    Args:
        method: A trained method (or variant).
        presets: Presets it must have defaults for (a plugin may support fewer).

    Returns:
        Names of the checks that ran, in order.

    Raises:
        AssertionError: naming the method and the broken rule.
    """
    check_method_attributes(method, presets)
    preset = presets[0] if presets else "smoke"
    check_step(method, preset)
    check_loss_decreases(method, preset)
    return ["attributes", "step", "loss_decreases"]
