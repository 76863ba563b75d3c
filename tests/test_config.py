"""Config precedence (preset < TOML < flags) and errors that name the key and file."""

import pytest

from sslbench.config import RunConfig, load_toml
from sslbench.errors import SslbenchError
from sslbench.registry import registry


def test_preset_fills_unset_fields():
    r = RunConfig(preset="smoke").resolved()
    assert (r.dataset, r.backbone, r.width, r.epochs) == ("digits", "convnet", 8, 3)
    assert RunConfig(preset="smoke", epochs=7).resolved().epochs == 7


def test_toml_overrides_preset_and_records_sections(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[run]\npreset = "smoke"\nseeds = [1, 2]\n[train]\nlr = 0.5\n[protocols.knn]\nk = 10\n')
    cfg = load_toml(f)
    assert cfg.seeds == [1, 2] and cfg.train == {"lr": 0.5} and cfg.protocol_params == {"knn": {"k": 10}}
    method = registry("methods").get("simsiam")
    train, _ = method.resolve(cfg.preset, cfg.train_overrides())
    assert train.lr == 0.5 and train.epochs == 3


@pytest.mark.parametrize(
    "text, match",
    [
        ("[run]\nmethod = ['simsiam']\n", r"unknown key in .*c\.toml \[run\] 'method'; did you mean 'methods'"),
        ("[run]\nseeds = 'zero'\n", r"\[run\]: 'seeds' must be"),
        ("[train]\nlr = 'fast'\n", r"\[train\]: 'lr' must be"),
        ("[protocols.knn]\nkk = 3\n", r"did you mean 'k'"),
        ("[rnu]\n", r"did you mean 'run'"),
        ("[run\n", r"TOML syntax error"),
    ],
)
def test_bad_toml_names_key_and_file(tmp_path, text, match):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(SslbenchError, match=match):
        load_toml(f)


def test_variant_from_toml_changes_only_the_loss(tmp_path):
    f = tmp_path / "v.toml"
    f.write_text('[variants.vicreg_cov2]\nbase = "vicreg"\nloss = { cov_coeff = 2.0 }\n')
    load_toml(f)
    v, base = registry("methods").get("vicreg_cov2"), registry("methods").get("vicreg")
    assert v.loss.cov_coeff == 2.0 and v.base == "vicreg"
    assert v.train == base.train and v.heads == base.heads and v.views == base.views
    load_toml(f)  # loading the same file twice is fine
    bad = tmp_path / "bad.toml"
    bad.write_text('[variants.x]\nbase = "vicreg"\nloss = { cov_coef = 2.0 }\n')
    with pytest.raises(SslbenchError, match="did you mean 'cov_coeff'"):
        load_toml(bad)


def test_unknown_names_fail_at_resolve():
    with pytest.raises(SslbenchError, match="did you mean 'vicreg_mod'"):
        RunConfig(methods=["vicreg_mdo"]).resolved()
    with pytest.raises(SslbenchError, match="did you mean 'quick'"):
        RunConfig(preset="quik").resolved()
