"""Recognise the checkpoint layouts of other SSL libraries and find the backbone weights in them.

A loaded checkpoint is flattened to dotted keys (``{"state_dict": {"backbone.conv1.weight": t}}``
becomes ``"state_dict.backbone.conv1.weight"``), so every layout is one or more
*key prefixes*: the backbone's weights are the tensors under the prefix, with it
stripped. :data:`LAYOUTS` lists the prefixes each peer writes; where and how each
peer writes them is in ``docs/external_checkpoints.md`` (repository and path).
A prefix is accepted only if it yields every weight the model has (``*.num_batches_tracked``
aside: it is unused in eval mode); when no listed layout fits, a single prefix that
does fit is used and reported, and several are refused as ambiguous.

Files are read with ``torch.load(weights_only=True)``. Two pieces of training
metadata that peers pickle by reference are let through as inert stand-ins, nothing
else: DINO's ``args`` (an ``argparse.Namespace``) and the ``exclude_bias_and_norm``
function VICReg's LARS keeps in its param groups.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslbench.errors import SslbenchError
from sslbench.io import load_checkpoint

#: Suffix of BatchNorm buffers a checkpoint may lack (older torch): they do not change an eval forward.
BENIGN_MISSING = ".num_batches_tracked"
_MAX_DEPTH = 8  # nesting deeper than any peer layout: not walked


@dataclass(frozen=True)
class Layout:
    """Where one peer keeps the backbone weights in its checkpoint.

    Attributes:
        name: Recorded as the encoder format (``"solo-learn"``, ``"dino"``, ...).
        prefixes: Flattened key prefixes of the backbone weights, preferred first.
        markers: Flattened key prefixes of which one must be present too (tells apart
            peers that share a prefix); empty: none needed.
        source: Repository and file where the layout is written.
    """

    name: str
    prefixes: tuple[str, ...]
    markers: tuple[str, ...] = ()
    source: str = ""


LAYOUTS: tuple[Layout, ...] = (
    Layout("vissl", ("classy_state_dict.base_model.model.trunk._feature_blocks.",
                     "classy_state_dict.base_model.model.trunk.base_model._feature_blocks."),
           source="facebookresearch/vissl vissl/hooks/log_hooks.py, vissl/models/trunks/resnext.py"),
    Layout("dino", ("teacher.module.backbone.", "teacher.backbone."), source="facebookresearch/dino main_dino.py"),
    Layout("moco", ("state_dict.module.encoder_q.", "state_dict.encoder_q."),
           source="facebookresearch/moco main_moco.py, moco/builder.py"),
    Layout("mocov3", ("state_dict.module.base_encoder.", "state_dict.base_encoder."),
           source="facebookresearch/moco-v3 main_moco.py, moco/builder.py"),
    Layout("solo-learn", ("state_dict.backbone.", "state_dict.encoder."), ("state_dict.classifier.",),
           source="vturrisi/solo-learn solo/methods/base.py, solo/utils/checkpointer.py"),
    Layout("lightly", ("state_dict.backbone.",), ("state_dict.online_classifier.", "state_dict.projection_head."),
           source="lightly-ai/lightly benchmarks/imagenet/resnet50/*.py, examples/pytorch_lightning/*.py"),
    Layout("lightning", ("state_dict.backbone.",), ("pytorch-lightning_version",),
           source="Lightning-AI/pytorch-lightning src/lightning/pytorch/trainer/connectors/checkpoint_connector.py"),
    Layout("vicreg_barlowtwins", ("model.module.backbone.",),
           source="facebookresearch/vicreg main_vicreg.py; facebookresearch/barlowtwins main.py"),
    Layout("sslbench", ("model.backbone.",), source="sslbench/train.py"),
    Layout("state_dict", ("", "module.", "state_dict.", "state_dict.module.", "model.", "model.module."),
           source="torch.nn.Module.state_dict(); a module. prefix from DistributedDataParallel"),
)
USER_PREFIX = "key_prefix"  # the format recorded when --key-prefix chose the weights
DISCOVERED = "discovered_prefix"  # ... when the only prefix that fits was found by search


@dataclass(frozen=True)
class Selection:
    """The backbone weights found in a checkpoint.

    Attributes:
        layout: Format name (a :class:`Layout` name, :data:`USER_PREFIX` or :data:`DISCOVERED`).
        prefix: The flattened prefix that was stripped.
        state: The weights under the model's own key names.
        ignored: Tensors of the file outside ``prefix`` (projectors, heads, momentum copies).
        notes: What was adapted to read the layout, one phrase each.
    """

    layout: str
    prefix: str
    state: dict[str, torch.Tensor]
    ignored: int
    notes: tuple[str, ...] = ()


# ----------------------------------------------------------------------------- reading


def _absent_function(*args: Any, **kwargs: Any) -> None:
    """Stands in for a function a peer pickled by reference (never needed to read weights)."""


#: Globals allowed besides weights_only's own: (object, pickled name).
PEER_METADATA: tuple[Any, ...] = (
    argparse.Namespace,  # DINO: save_dict["args"] (main_dino.py)
    (_absent_function, "__main__.exclude_bias_and_norm"),  # VICReg: LARS(weight_decay_filter=...) (main_vicreg.py)
)


@contextlib.contextmanager
def _peer_metadata_allowed() -> Iterator[None]:
    safe = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    with safe(list(PEER_METADATA)) if safe is not None else contextlib.nullcontext():
        yield


def _check_path(path: Path) -> None:
    if path.is_dir():
        names = sorted(p.name for p in path.iterdir() if p.suffix in (".pt", ".pth", ".ckpt", ".torch", ".tar"))
        if (path / ".metadata").exists():
            hint = ("it looks like a torch.distributed.checkpoint directory: convert it to one file with "
                    "torch.distributed.checkpoint.format_utils.dcp_to_torch_save")
        elif names:
            hint = f"pass one of the files in it: {', '.join(names[:3])}" + (" ..." if len(names) > 3 else "")
        else:
            hint = "pass the checkpoint file itself"
        raise SslbenchError(f"encoder {path} is a directory, not a file; {hint}")
    if not path.exists():
        raise SslbenchError(f"encoder file {path} does not exist")
    if path.stat().st_size == 0:
        raise SslbenchError(f"encoder file {path} is empty (0 bytes); save the checkpoint again")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a ``torch.save`` file with ``weights_only=True`` (plus :data:`PEER_METADATA`).

    Raises:
        SslbenchError: for a directory, a missing or empty file, a pickle that carries code
            (nothing of it runs), a corrupt file, or an object that is not a dict with string keys.
    """
    _check_path(path)
    with _peer_metadata_allowed():
        obj = load_checkpoint(path)
    if not isinstance(obj, dict):
        raise SslbenchError(f"{path} holds a {type(obj).__name__}, not a state dict (a dict of tensors)")
    odd = [k for k in obj if not isinstance(k, str)]
    if odd:
        raise SslbenchError(f"{path} has key {odd[0]!r} ({type(odd[0]).__name__}) at its top level; a state dict "
                            "maps parameter names (str) to tensors")
    return obj


# ----------------------------------------------------------------------------- flattening


def flatten(obj: dict[Any, Any]) -> tuple[dict[str, Any], set[str]]:
    """Nested dicts as one dict of dotted keys.

    Returns:
        ``(leaves, odd)``: every non-dict value by dotted key, and the dotted keys that
        pass through a non-string key (``str(key)`` stands in for it).
    """
    leaves: dict[str, Any] = {}
    odd: set[str] = set()

    def walk(d: dict[Any, Any], prefix: str, via_odd: bool, depth: int) -> None:
        for k, v in d.items():
            name, is_odd = prefix + str(k), via_odd or not isinstance(k, str)
            if isinstance(v, dict) and v and depth < _MAX_DEPTH:
                walk(v, name + ".", is_odd, depth + 1)
            else:
                leaves[name] = v
                if is_odd:
                    odd.add(name)

    walk(obj, "", False, 0)
    return leaves, odd


def _under(flat: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}


def _sequential_names(state: dict[str, Any], model: nn.Module) -> tuple[dict[str, Any], bool]:
    """Rename ``0.weight`` to ``conv1.weight``: weights saved from ``nn.Sequential(*model.children())``.

    lightly's examples build the backbone as ``nn.Sequential(*list(resnet.children())[:-1])``;
    position ``i`` is then the model's ``i``-th child.
    """
    heads = {k.split(".", 1)[0] for k in state}
    children = [name for name, _ in model.named_children()]
    if not heads or not all(h.isdigit() for h in heads) or any(n.isdigit() for n in children):
        return state, False
    if max(int(h) for h in heads) >= len(children):
        return state, False
    return {f"{children[int(k.split('.', 1)[0])]}.{k.split('.', 1)[1]}" if "." in k else k: v
            for k, v in state.items()}, True


def _needed(want: dict[str, torch.Tensor]) -> list[str]:
    return [k for k in want if not k.endswith(BENIGN_MISSING)]


def _fits(state: dict[str, Any], needed: list[str]) -> int:
    return sum(isinstance(state.get(k), torch.Tensor) for k in needed)


# ----------------------------------------------------------------------------- choosing


def _candidates(flat: dict[str, Any], key_prefix: str | None) -> Iterator[tuple[str, str]]:
    """``(format, prefix)`` pairs to try, preferred first."""
    if key_prefix is not None:
        yield USER_PREFIX, key_prefix
        return
    for layout in LAYOUTS:
        if layout.markers and not any(k.startswith(m) for m in layout.markers for k in flat):
            continue
        for p in layout.prefixes:
            if any(k.startswith(p) for k in flat):
                yield layout.name, p


def _discover(flat: dict[str, Any], needed: list[str]) -> list[str]:
    """Every prefix under which all of ``needed`` are tensors."""
    if not needed:
        return []
    first = needed[0]
    found = [k[: len(k) - len(first)] for k in flat if k == first or k.endswith("." + first)]
    return [p for p in found if all(isinstance(flat.get(p + k), torch.Tensor) for k in needed)]


def select_backbone(
    obj: dict[str, Any], model: nn.Module, path: Path, key_prefix: str | None = None
) -> tuple[Selection | None, Selection]:
    """Find ``model``'s weights in a loaded checkpoint.

    Args:
        obj: What :func:`read_checkpoint` returned.
        model: The freshly built backbone; only its state-dict names (and child order) are read.
        path: The file, for messages.
        key_prefix: A flattened prefix given by the user (``--key-prefix``); no other is tried.

    Returns:
        ``(fit, best)``: the first selection holding every needed weight (``None`` if none
        does) and the selection holding the most of them (for the error message).

    Raises:
        SslbenchError: when several prefixes fit and none is listed in :data:`LAYOUTS`, or
            the chosen weights pass through a non-string key.
    """
    flat, odd = flatten(obj)
    needed = _needed(model.state_dict())
    best: Selection | None = None
    best_score = -1
    for fmt, prefix in _candidates(flat, key_prefix):
        state, renamed = _sequential_names(_under(flat, prefix), model)
        notes = ("nn.Sequential positions renamed to the model's children",) if renamed else ()
        sel = _selection(fmt, prefix, state, flat, notes)
        score = _fits(state, needed)
        if score == len(needed):
            _refuse_odd(sel, odd, path)
            return sel, sel
        if score > best_score:
            best, best_score = sel, score
    if key_prefix is None:
        found = _discover(flat, needed)
        if len(found) > 1:
            raise SslbenchError(f"{path}: several sets of weights fit the model, under "
                                f"{', '.join(repr(p) for p in found[:4])}; choose one with --key-prefix")
        if found:
            sel = _selection(DISCOVERED, found[0], _under(flat, found[0]), flat)
            _refuse_odd(sel, odd, path)
            return sel, sel
    if best is None:
        best = _selection(USER_PREFIX if key_prefix is not None else "state_dict", key_prefix or "", {}, flat)
    return None, best


def _selection(fmt: str, prefix: str, state: dict[str, Any], flat: dict[str, Any],
               notes: tuple[str, ...] = ()) -> Selection:
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    total = sum(isinstance(v, torch.Tensor) for v in flat.values())
    return Selection(fmt, prefix, tensors, total - len(tensors), notes)


def _refuse_odd(sel: Selection, odd: set[str], path: Path) -> None:
    bad = sorted(k for k in odd if k.startswith(sel.prefix))
    if bad:
        raise SslbenchError(f"{path}: the weights under {sel.prefix!r} include a non-string key ({bad[0]!r}); "
                            "a state dict maps parameter names (str) to tensors")


def top_level_summary(obj: dict[str, Any], n: int = 6) -> str:
    """``"epoch, model, optimizer"``: the first keys of a checkpoint, for messages."""
    keys = [str(k) for k in obj]
    return ", ".join(keys[:n]) + (f", ... (+{len(keys) - n} more)" if len(keys) > n else "")


# ----------------------------------------------------------------------------- adapting the model


def adapt_model(layout: str, model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[str, ...]:
    """Match ``model`` to how the peer built the same architecture; returns what changed.

    solo-learn's CIFAR stem is ``Conv2d(3, 64, kernel_size=3, stride=1, padding=2)``
    (``solo/methods/base.py``); sslbench's is ``padding=1``. Same weights, other features,
    so a solo-learn checkpoint with a 3x3 ``conv1`` gets ``padding=2``.
    """
    conv = getattr(model, "conv1", None)
    w = state.get("conv1.weight")
    if (layout == "solo-learn" and isinstance(conv, nn.Conv2d) and w is not None and tuple(w.shape[-2:]) == (3, 3)
            and conv.kernel_size == (3, 3) and conv.padding == (1, 1)):
        conv.padding = (2, 2)
        return ("conv1 padding 2, as solo-learn's CIFAR stem",)
    return ()
