"""Property-based: any config file gives a valid RunConfig or an SslbenchError, never another exception."""

import dataclasses
import math
import string
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from sslbench.config import RunConfig, load_toml
from sslbench.errors import SslbenchError
from sslbench.method import TrainConfig
from sslbench.registry import registry

UNIT = settings.default.max_examples
RUN_KEYS = [f.name for f in dataclasses.fields(RunConfig)]
TRAIN_KEYS = [f.name for f in dataclasses.fields(TrainConfig)]
PROTOCOLS = ["knn", "linear", "collapse", "knnn"]
VARIANT_KEYS = ["base", "summary", "loss"]
LOSS_KEYS = ["cov_coeff", "var_coeff", "sim_coeff", "lambd", "temperature", "std_target"]
NAMES = ["simsiam", "vicreg", "vicreg_mod", "byol", "smoke", "quick", "digits", "convnet", "knn", "cpu", "../x", "a/b",
         ".", "..", "cache", "ok_name.v2"]


def _toml_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{_toml_str(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"


def to_toml(doc: dict) -> str:
    """Serialise a dict as TOML: one ``"key" = value`` line per top-level key, inline tables below."""
    return "".join(f"{_toml_str(k)} = {_toml_value(v)}\n" for k, v in doc.items())


scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-3, max_value=40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(NAMES),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def _table(keys: list[str]) -> st.SearchStrategy:
    return st.dictionaries(st.sampled_from(keys) | st.text(max_size=8), values, max_size=4)


variant = st.fixed_dictionaries(
    {},
    optional={"base": st.sampled_from(["vicreg", "simsiam", "byol", "nope"]) | values, "summary": values,
              "loss": st.dictionaries(st.sampled_from(LOSS_KEYS) | st.text(max_size=6), values, max_size=3) | values,
              "extra": values},
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "run": _table(RUN_KEYS) | values,
        "train": _table(TRAIN_KEYS) | values,
        "protocols": st.dictionaries(st.sampled_from(PROTOCOLS) | st.text(max_size=6), _table(["k", "temperature"]) | values,
                                     max_size=2) | values,
        "variants": st.dictionaries(st.sampled_from(NAMES) | st.text(alphabet=string.printable, max_size=10),
                                    variant | values, max_size=2) | values,
        "runn": values,
    },
)


def _load(path: Path) -> None:
    """load_toml then resolved(): each either succeeds or raises SslbenchError; the registry is restored."""
    methods = registry("methods")
    entries, sources = dict(methods._entries), dict(methods._sources)
    try:
        cfg = load_toml(path)
        assert isinstance(cfg, RunConfig)
        resolved = cfg.resolved()
        assert isinstance(resolved.dataset, str) and isinstance(resolved.width, int) and resolved.seeds
    except SslbenchError as e:
        assert str(e)
    finally:
        methods._entries, methods._sources = entries, sources


@settings(max_examples=15 * UNIT)  # the profile's unit (tests/conftest.py): 150 in ci
@given(doc=documents)
def test_any_document_gives_a_config_or_an_sslbench_error(tmp_path, doc):
    path = tmp_path / "c.toml"
    path.write_text(to_toml(doc), encoding="utf-8")
    _load(path)


@settings(max_examples=8 * UNIT)  # the profile's unit (tests/conftest.py): 80 in ci
@given(raw=st.binary(max_size=200) | st.text(alphabet=string.printable + "é[]=\"'{}", max_size=200).map(str.encode))
def test_any_bytes_give_a_config_or_an_sslbench_error(tmp_path, raw):
    path = tmp_path / "c.toml"
    path.write_bytes(raw)
    _load(path)


def test_the_serialiser_round_trips():
    import tomllib

    doc = {"run": {"seeds": [0, 1], "out": 'a"b\\c\x01'}, "variants": {"../x": {"loss": {"cov_coeff": 2.0}}}}
    assert tomllib.loads(to_toml(doc)) == doc


numbers = st.one_of(st.integers(-3, 40), st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=True, allow_infinity=True), st.floats(-2.0, 2.0))
VIEW_KEYS = ["crop_scale", "crop_ratio", "flip_p", "jitter_p", "brightness", "blur_sigma", "solarize_p"]
numeric_documents = st.fixed_dictionaries({}, optional={
    "run": st.fixed_dictionaries({"preset": st.just("smoke"), "methods": st.just(["simsiam"])},
                                 optional={"epochs": numbers, "width": numbers, "seeds": st.lists(numbers, max_size=3)}),
    "train": st.dictionaries(st.sampled_from(TRAIN_KEYS), numbers, max_size=4),
    "views": st.dictionaries(st.sampled_from(VIEW_KEYS), numbers | st.lists(numbers, max_size=3), max_size=3),
    "heads": st.dictionaries(st.sampled_from(["proj_dim", "proj_hidden", "pred_hidden"]), numbers, max_size=2),
})


def _sane(cfg: RunConfig) -> None:
    """What every number of a resolved recipe must be, written out (not via sslbench.config's bounds)."""
    assert 1 <= cfg.width <= 4096 and all(0 <= s < 2**32 for s in cfg.seeds)
    for name in cfg.methods:
        train, heads, views = cfg.recipe(registry("methods").get(name))
        assert 1 <= train.epochs <= 100_000 and 2 <= train.batch_size and 2 <= train.probe_images
        assert math.isfinite(train.lr) and train.lr > 0 and 0 <= train.momentum < 1
        assert math.isfinite(train.weight_decay) and train.weight_decay >= 0
        assert 0 <= train.warmup_epochs <= 100_000 and 0 <= train.final_lr_ratio <= 1
        assert all(isinstance(v, int) and 1 <= v <= 65536 for v in heads.values())
        for v in views:
            assert len(v.crop_scale) == 2 and 0 < v.crop_scale[0] <= v.crop_scale[1] <= 1
            assert len(v.crop_ratio) == 2 and 0 < v.crop_ratio[0] <= v.crop_ratio[1] < math.inf
            assert len(v.blur_sigma) == 2 and 0 < v.blur_sigma[0] <= v.blur_sigma[1] < math.inf
            assert all(0 <= p <= 1 for p in (v.flip_p, v.jitter_p, v.brightness, v.solarize_p))


@settings(max_examples=20 * UNIT)  # the profile's unit (tests/conftest.py): 200 in ci
@given(doc=numeric_documents)
def test_a_config_that_loads_has_only_numbers_a_run_can_use(tmp_path, doc):
    path = tmp_path / "c.toml"
    path.write_text(to_toml(doc), encoding="utf-8")
    try:
        cfg = load_toml(path).resolved()
    except SslbenchError as e:
        assert str(e) and "\n" not in str(e)
        return
    _sane(cfg)


# ----------------------------------------------------------------------------- the same documents through the CLI


@settings(max_examples=3 * UNIT)
@given(doc=documents | numeric_documents)
def test_any_config_through_the_cli_is_exit_2_or_a_plan_and_writes_nothing(sandboxes, doc):
    """``run --config --dry-run``: exit 2 exactly when the library refuses the file; nothing written outside --out."""
    box = sandboxes()
    (box.root / "c.toml").write_text(to_toml(doc), encoding="utf-8")
    (box.root / "out").mkdir()
    (box.root / "out" / "NOTES.md").write_text("mine")
    methods = registry("methods")
    entries, sources = dict(methods._entries), dict(methods._sources)
    try:
        try:
            load_toml(box.root / "c.toml").resolved()
            refused = False
        except SslbenchError:
            refused = True
        methods._entries, methods._sources = dict(entries), dict(sources)
        res = box.call("run", "--config", "c.toml", "--dry-run", "--out", "out", out="out",
                       keep=(box.root / "out" / "NOTES.md",))
    finally:
        methods._entries, methods._sources = entries, sources
    assert res.rc == 2 if refused else res.rc in (0, 2), res  # protocol parameters are checked by the CLI only
