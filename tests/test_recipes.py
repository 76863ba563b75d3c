"""The ``cifar10`` recipes are the ones docs/reference/recipes.md documents, field by field.

The doc's tables are parsed here: every recipe field (``train.``, ``heads.``, ``views.``,
``view1.``/``view2.``, ``loss.``, ``target.``) must equal what the preset resolves, every
field the presets set must be documented, and every reference that differs from sslbench's
value must carry a reason. Also: the CIFAR study file keeps those recipes, the Barlow Twins
``scale_loss`` factor, and the VIbCReg scaling that ``baselines/vicreg_mod.py`` states.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from baselines.losses.barlow_twins import BarlowTwinsConfig, barlow_twins_terms, combine
from baselines.losses.vicreg import correlation_term
from sslbench.config import RunConfig, load_toml
from sslbench.registry import registry

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reference" / "recipes.md"
STUDY = ROOT / "studies" / "loss_variants_cifar10.toml"
METHODS = ("simsiam", "byol", "barlow_twins", "vicreg", "simclr")
CODE_PREFIXES = ("train", "heads", "views", "view1", "view2", "loss", "target")


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of a recipe table: the field, sslbench's value, the reference's, the reason."""

    field: str
    sslbench: str
    reference: str
    reason: str


def _tables() -> dict[str, list[Row]]:
    """``{name: rows}`` of every table that follows a ``<!-- recipe NAME -->`` marker."""
    lines = DOC.read_text().splitlines()
    out: dict[str, list[Row]] = {}
    for i, line in enumerate(lines):
        marker = re.fullmatch(r"<!-- recipe (\w+) -->", line.strip())
        if not marker:
            continue
        rows = []
        for body in lines[i + 3:]:  # the header and its separator follow the marker
            if not body.startswith("|"):
                break
            cells = [c.strip() for c in body.strip().strip("|").split("|")]
            assert len(cells) == 5, f"{DOC.name}: table {marker[1]!r} row {body!r} has {len(cells)} cells, not 5"
            rows.append(Row(cells[0], cells[1], cells[2], cells[4]))
        out[marker[1]] = rows
    return out


_ALLOWED = (ast.Expression, ast.Constant, ast.Tuple, ast.BinOp, ast.Div, ast.UnaryOp, ast.USub, ast.Load)


def _value(cell: str) -> Any:
    """A cell as a Python value where it is a literal (numbers, tuples, ``3/4``, booleans), else its text."""
    text = cell.strip("`").strip()
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return text
    if all(isinstance(node, _ALLOWED) for node in ast.walk(tree)):
        return eval(compile(tree, "<cell>", "eval"), {"__builtins__": {}})  # numbers and tuples only
    return text


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        return a == b
    return a == pytest.approx(b, rel=1e-12)


def _resolved(name: str, field: str) -> Any:
    """The value of ``field`` (``prefix.name``) in ``name``'s ``cifar10`` recipe."""
    method = registry("methods").get(name)
    train, heads, views = RunConfig(preset="cifar10", methods=[name]).recipe(method)
    prefix, key = field.split(".", 1)
    if prefix == "train":
        return getattr(train, key)
    if prefix == "heads":
        return heads[key]
    if prefix == "views":
        first, second = getattr(views[0], key), getattr(views[1], key)
        assert _same(first, second), f"{name}: {key} differs between the views ({first} vs {second}); document view1/view2"
        return first
    if prefix in ("view1", "view2"):
        return getattr(views[int(prefix[-1]) - 1], key)
    return getattr(method.loss if prefix == "loss" else method.target, key)


def _rows(name: str) -> list[Row]:
    tables = _tables()
    return tables["all"] + tables[name]


@pytest.mark.parametrize("name", METHODS)
def test_the_documented_cifar10_recipe_is_the_resolved_one(name):
    for row in _rows(name):
        if row.field.split(".", 1)[0] in CODE_PREFIXES:
            got = _resolved(name, row.field)
            assert _same(_value(row.sslbench), got), f"{name} {row.field}: doc says {row.sslbench}, code resolves {got!r}"


@pytest.mark.parametrize("name", METHODS)
def test_every_difference_from_the_reference_has_a_reason(name):
    for row in _rows(name):
        if not _same(_value(row.sslbench), _value(row.reference)):
            assert row.reason, f"{name} {row.field}: sslbench {row.sslbench} vs reference {row.reference} without a reason"


@pytest.mark.parametrize("name", METHODS)
def test_every_field_the_cifar10_preset_sets_is_documented(name):
    method = registry("methods").get(name)
    documented = {row.field for row in _rows(name)}
    own = method.presets["cifar10"]
    preset_views = registry("presets").get("cifar10").views
    for key in own.get("train", {}):
        assert f"train.{key}" in documented, f"{name}: train.{key} is set but not in {DOC.name}"
    for key in own.get("heads", {}):
        assert f"heads.{key}" in documented, f"{name}: heads.{key} is set but not in {DOC.name}"
    for key in {**preset_views, **own.get("views", {})}:
        assert {f"views.{key}", f"view1.{key}"} & documented, f"{name}: views.{key} is set but not in {DOC.name}"


def test_a_wrong_documented_value_would_fail():
    """The comparison is live: a changed value no longer matches."""
    assert _same(_value("0.3"), _resolved("vicreg", "train.lr"))
    assert not _same(_value("0.2"), _resolved("vicreg", "train.lr"))
    assert _same(_value("(3/4, 4/3)"), (0.75, 4 / 3))
    assert _value("`lars`") == "lars" and _value("True") is True and _value("1e-4") == 1e-4


@pytest.fixture
def restore_methods():
    """Put the method registry back after a test that loads a file with variants."""
    methods = registry("methods")
    entries, sources = dict(methods._entries), dict(methods._sources)
    yield
    methods._entries, methods._sources = entries, sources


def test_the_cifar10_study_keeps_the_documented_recipes(restore_methods):
    cfg = load_toml(STUDY).resolved()
    assert cfg.preset == "cifar10"
    get = registry("methods").get
    for name in cfg.methods:
        method = get(name)
        assert cfg.recipe(method) == RunConfig(preset="cifar10").recipe(method), f"the study overrides {name}'s recipe"
    assert cfg.recipe(get("simclr"))[0].epochs == 1000
    assert cfg.protocol_params["knn"]["k"] == 200 and cfg.protocol_params["knn"]["temperature"] == 0.1
    exact = get("barlow_twins_scale_loss01")
    assert exact.base == "barlow_twins" and exact.loss == dataclasses.replace(get("barlow_twins").loss, scale_loss=0.1)


def _barlow_by_hand(za: np.ndarray, zb: np.ndarray, lambd: float, eps: float) -> float:
    """Zbontar et al. 2021, Eq. 1: each view batch-normalised (biased variance), ``C = za_n^T zb_n / N``."""
    na = (za - za.mean(0)) / np.sqrt(za.var(0) + eps)
    nb = (zb - zb.mean(0)) / np.sqrt(zb.var(0) + eps)
    c = na.T @ nb / za.shape[0]
    off = c - np.diag(np.diag(c))
    return float(((1 - np.diag(c)) ** 2).sum() + lambd * (off**2).sum())


def test_scale_loss_multiplies_the_barlow_twins_loss_and_one_changes_nothing():
    gen = torch.Generator().manual_seed(0)
    za, zb = torch.randn(64, 16, generator=gen, dtype=torch.float64), torch.randn(64, 16, generator=gen, dtype=torch.float64)
    hand = _barlow_by_hand(za.numpy(), zb.numpy(), 0.0051, 1e-5)
    scaled = BarlowTwinsConfig(scale_loss=0.1)
    assert float(combine(barlow_twins_terms(za, zb, scaled), scaled)) == pytest.approx(0.1 * hand, rel=1e-12)
    terms = barlow_twins_terms(za, zb, BarlowTwinsConfig())
    assert torch.equal(combine(terms, BarlowTwinsConfig()), terms["on_diagonal"] + 0.0051 * terms["off_diagonal"])


def _vibcreg_cov(za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
    """VIbCReg's covariance term (Lee & Aune 2021; ML4ITS/vibcreg ``VIbCRegCovLoss``): each dimension
    centred and l2-normalised over the batch, squared off-diagonal entries averaged over all D^2."""
    total = za.new_zeros(())
    for z in (za, zb):
        n = F.normalize(z - z.mean(0), p=2, dim=0)
        c = n.T @ n
        total = total + (c - torch.diag(torch.diagonal(c))).pow(2).mean()
    return total


@pytest.mark.parametrize("dim", [256, 2048])
def test_vicreg_mod_correlation_term_is_d_over_200_times_vibcregs(dim):
    """The ratio ``baselines/vicreg_mod.py`` states: 1.28x at D = 256, 10.24x at D = 2048."""
    gen = torch.Generator().manual_seed(1)
    shared = torch.randn(512, 8, generator=gen, dtype=torch.float64)
    za, zb = (shared @ torch.randn(8, dim, generator=gen, dtype=torch.float64)
              + 0.5 * torch.randn(512, dim, generator=gen, dtype=torch.float64) for _ in range(2))
    ratio = float(correlation_term(za, zb) / (200.0 * _vibcreg_cov(za, zb)))
    assert ratio == pytest.approx(dim / 200, rel=1e-3)
