"""Config precedence (preset < TOML < flags) and errors that name the key and file."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sslbench.config import RunConfig, load_toml
from sslbench.errors import SslbenchError
from sslbench.registry import registry

ROOT = Path(__file__).resolve().parents[1]


def test_preset_fills_unset_fields():
    r = RunConfig(preset="smoke").resolved()
    assert (r.dataset, r.backbone, r.width) == ("digits", "convnet", 8)
    simsiam = registry("methods").get("simsiam")
    assert r.recipe(simsiam)[0].epochs == 3
    assert RunConfig(preset="smoke", epochs=7).resolved().recipe(simsiam)[0].epochs == 7


def test_a_methods_own_preset_epochs_sit_between_the_preset_and_the_user():
    method = dataclasses.replace(registry("methods").get("simsiam"), presets={"smoke": {"train": {"epochs": 5}}})
    assert RunConfig(preset="smoke").recipe(method)[0].epochs == 5
    assert RunConfig(preset="smoke", epochs=7).recipe(method)[0].epochs == 7
    assert RunConfig(preset="smoke", train={"epochs": 6}).recipe(method)[0].epochs == 6
    assert RunConfig(preset="smoke", train={"simsiam": {"epochs": 2}}).recipe(method)[0].epochs == 2
    assert RunConfig(preset="smoke").recipe(registry("methods").get("vicreg"))[0].epochs == 3


def test_toml_overrides_preset_and_records_sections(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[run]\npreset = "smoke"\nseeds = [1, 2]\n[train]\nlr = 0.5\n[protocols.knn]\nk = 10\n')
    cfg = load_toml(f)
    assert cfg.seeds == [1, 2] and cfg.train == {"lr": 0.5} and cfg.protocol_params == {"knn": {"k": 10}}
    method = registry("methods").get("simsiam")
    train, _, _ = cfg.recipe(method)
    assert train.lr == 0.5 and train.epochs == 3


@pytest.mark.parametrize(
    "text, match",
    [
        ("[run]\nmethod = ['simsiam']\n", r"unknown key in .*c\.toml \[run\] 'method'; did you mean 'methods'"),
        ("[run]\nseeds = 'zero'\n", r"\[run\]: 'seeds' must be"),
        ("[train]\nlr = 'fast'\n", r"\[train\]: 'lr' must be"),
        ("[protocols.knn]\nkk = 3\n", r"did you mean 'k'"),
        ("[rnu]\n", r"did you mean 'run'"),
        ("[views]\ncrop_scal = [0.3, 1.0]\n", r"did you mean 'crop_scale'"),
        ("[views]\ncrop_scale = 'mild'\n", r"\[views\]: 'crop_scale' must be"),
        ("[heads]\nproj_dim = 0\n", r"\[heads\]: 'proj_dim' must be an integer in 1\.\.65536, got 0"),
        ("[run\n", r"TOML syntax error"),
    ],
)
def test_bad_toml_names_key_and_file(tmp_path, text, match):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(SslbenchError, match=match):
        load_toml(f)


def test_views_and_heads_tables_layer_on_the_method_recipe(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[run]\npreset = "smoke"\n[views]\ncrop_scale = [0.5, 1.0]\n[heads]\npred_hidden = 16\n')
    cfg = load_toml(f).resolved()
    simsiam, vicreg = registry("methods").get("simsiam"), registry("methods").get("vicreg")
    _, heads, views = cfg.recipe(simsiam)
    assert heads["pred_hidden"] == 16 and heads["proj_dim"] == 128  # the smoke preset's, untouched
    assert all(v.crop_scale == (0.5, 1.0) for v in views)
    assert views[0].flip_p == simsiam.views[0].flip_p  # only the named field changes
    _, heads, _ = cfg.recipe(vicreg)
    assert "pred_hidden" not in heads  # a head vicreg does not have is not added
    assert RunConfig(preset="smoke").recipe(simsiam)[2] == simsiam.views
    assert all(v.crop_scale == (0.6, 1.0) for v in RunConfig(preset="quick").recipe(simsiam)[2])  # Preset.views


def test_preset_and_method_views_apply_in_order():
    method = dataclasses.replace(
        registry("methods").get("vicreg"), presets={"p": {"views": {"flip_p": 0.0, "crop_scale": (0.3, 1.0)}}}
    )
    a, b = method.resolve_views("p", {"crop_scale": (0.6, 1.0), "jitter_p": 0.1}, {"flip_p": 0.25})
    assert a == b and (a.crop_scale, a.jitter_p, a.flip_p) == ((0.3, 1.0), 0.1, 0.25)


def test_heads_sub_table_applies_to_one_method_and_its_variants(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[run]\npreset = "smoke"\n[heads]\nproj_hidden = 64\n[heads.vicreg]\nproj_dim = 32\n')
    cfg = load_toml(f).resolved()
    get = registry("methods").get
    assert cfg.recipe(get("vicreg"))[1] == {"proj_hidden": 64, "proj_dim": 32}
    assert cfg.recipe(get("vicreg_mod"))[1] == {"proj_hidden": 64, "proj_dim": 32}  # a variant keeps its base's recipe
    assert cfg.recipe(get("barlow_twins"))[1]["proj_dim"] == 128  # the smoke preset's, untouched
    bad = tmp_path / "bad.toml"
    bad.write_text('[run]\npreset = "smoke"\n[heads.vicreg]\npred_hidden = 8\n')
    with pytest.raises(SslbenchError, match="head of 'vicreg'"):
        load_toml(bad).resolved()
    bad.write_text('[heads.vicreg]\nproj_dim = -1\n')
    with pytest.raises(SslbenchError, match=r"\[heads.vicreg\]: 'proj_dim' must be an integer in 1\.\.65536, got -1"):
        load_toml(bad)


def test_train_sub_table_applies_to_one_method_and_its_variants(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[run]\npreset = "smoke"\n[train]\nepochs = 2\nlr = 0.5\n[train.simsiam]\nlr = 0.01\n')
    cfg = load_toml(f).resolved()
    get = registry("methods").get
    simsiam, nosg, vicreg = (cfg.recipe(get(n))[0] for n in ("simsiam", "simsiam_nosg", "vicreg"))
    assert (simsiam.lr, simsiam.epochs, nosg.lr, vicreg.lr, vicreg.epochs) == (0.01, 2, 0.01, 0.5, 2)
    bad = tmp_path / "bad.toml"
    bad.write_text('[train.simsiam]\nlr = "fast"\n')
    with pytest.raises(SslbenchError, match=r"\[train.simsiam\]: 'lr' must be"):
        load_toml(bad)
    bad.write_text('[train.simsaim]\nlr = 0.1\n')
    with pytest.raises(SslbenchError, match="did you mean 'simsiam'"):
        load_toml(bad).resolved()


def test_heads_table_naming_no_head_of_the_run_fails():
    with pytest.raises(SslbenchError, match="did you mean 'pred_hidden'"):
        RunConfig(preset="smoke", methods=["simsiam"], heads={"pred_hiden": 8}).resolved()


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


def test_study_config_pins_the_recipe_it_was_measured_with():
    """docs/study was measured with the quick recipe of commit 0b55e9b; the study file pins it."""
    cfg = load_toml(Path(__file__).resolve().parents[1] / "studies" / "loss_variants.toml").resolved()
    get = registry("methods").get
    train, heads, views = cfg.recipe(get("vicreg_mod"))
    assert (train.batch_size, heads["proj_dim"], views[0].crop_scale, train.epochs) == (256, 1024, (0.2, 1.0), 3)
    train, heads, _ = cfg.recipe(get("simsiam"))
    assert (train.batch_size, train.lr, heads["proj_dim"]) == (256, 0.1, 1024)
    train, heads, _ = cfg.recipe(get("simclr"))
    assert (train.batch_size, train.lr, heads["proj_dim"]) == (256, 0.4, 128)
    assert cfg.recipe(get("byol"))[0].batch_size == 256


# ----------------------------------------------------------------------------- numbers out of range


@pytest.mark.parametrize(
    "text, where, message",
    [
        ("[run]\nepochs = 0\n", "[run]", "'epochs' must be an integer in 1..100000, got 0"),
        ("[run]\nepochs = -2\n", "[run]", "'epochs' must be an integer in 1..100000, got -2"),
        ("[run]\nepochs = 100000000000\n", "[run]", "'epochs' must be an integer in 1..100000"),
        ("[run]\nwidth = 0\n", "[run]", "'width' must be an integer in 1..4096, got 0"),
        ("[run]\nwidth = -8\n", "[run]", "'width' must be an integer in 1..4096, got -8"),
        ("[run]\nseeds = [0, -1]\n", "[run]", "'seeds' must each be an integer in 0..4294967295, got -1"),
        ("[run]\nseeds = [4294967296]\n", "[run]", "'seeds' must each be an integer in 0..4294967295"),
        ("[train]\nepochs = 0\n", "[train]", "'epochs' must be an integer in 1..100000, got 0"),
        ("[train.simsiam]\nepochs = -1\n", "[train.simsiam]", "'epochs' must be an integer in 1..100000, got -1"),
        ("[train]\nbatch_size = 0\n", "[train]", "'batch_size' must be an integer in 2..1048576, got 0"),
        ("[train]\nbatch_size = -256\n", "[train]", "'batch_size' must be an integer in 2..1048576"),
        ("[train]\nprobe_images = 0\n", "[train]", "'probe_images' must be an integer in 2..1048576, got 0"),
        ("[train]\nlr = nan\n", "[train]", "'lr' must be a finite number > 0, got nan"),
        ("[train]\nlr = inf\n", "[train]", "'lr' must be a finite number > 0, got inf"),
        ("[train]\nlr = -0.1\n", "[train]", "'lr' must be a finite number > 0, got -0.1"),
        ("[train]\nmomentum = nan\n", "[train]", "'momentum' must be a number in [0, 1), got nan"),
        ("[train]\nmomentum = -0.9\n", "[train]", "'momentum' must be a number in [0, 1), got -0.9"),
        ("[train]\nweight_decay = -inf\n", "[train]", "'weight_decay' must be a finite number >= 0, got -inf"),
        ("[train]\nwarmup_epochs = -1.0\n", "[train]", "'warmup_epochs' must be a number in [0, 100000], got -1.0"),
        ("[train]\nfinal_lr_ratio = 2.0\n", "[train]", "'final_lr_ratio' must be a number in [0, 1], got 2.0"),
        ("[views]\ncrop_scale = [0.5]\n", "[views]", "'crop_scale' must be [lo, hi] with lo <= hi, each a number in (0, 1]"),
        ("[views]\ncrop_scale = [0.0, 1.0]\n", "[views]", "'crop_scale' must be [lo, hi]"),
        ("[views]\ncrop_scale = [0.5, 1.5]\n", "[views]", "'crop_scale' must be [lo, hi]"),
        ("[views]\ncrop_scale = [0.9, 0.5]\n", "[views]", "'crop_scale' must be [lo, hi] with lo <= hi"),
        ("[views]\ncrop_ratio = [0.75, nan]\n", "[views]", "'crop_ratio' must be [lo, hi]"),
        ("[views]\nflip_p = 1.5\n", "[views]", "'flip_p' must be a number in [0, 1], got 1.5"),
        ("[views]\nbrightness = -0.4\n", "[views]", "'brightness' must be a number in [0, 1], got -0.4"),
        ("[views]\nblur_sigma = [0.0, 2.0]\n", "[views]", "'blur_sigma' must be [lo, hi]"),
        ("[heads]\nproj_dim = 100000000\n", "[heads]", "'proj_dim' must be an integer in 1..65536"),
        ("[heads.vicreg]\nproj_hidden = -1\n", "[heads.vicreg]", "'proj_hidden' must be an integer in 1..65536"),
    ],
)
def test_numbers_out_of_range_name_file_table_and_key(tmp_path, text, where, message):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(SslbenchError) as e:
        load_toml(f)
    assert str(e.value).startswith(f"{f} {where}: ") and message in str(e.value)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"epochs": 0}, "RunConfig: 'epochs' must be an integer in 1..100000, got 0"),
        ({"epochs": -3}, "RunConfig: 'epochs' must be an integer in 1..100000, got -3"),
        ({"width": 0}, "RunConfig: 'width' must be an integer in 1..4096, got 0"),  # was replaced by the preset's 8
        ({"seeds": [-1]}, "RunConfig: 'seeds' must each be an integer in 0..4294967295, got -1"),
        ({"seeds": [10**20]}, "RunConfig: 'seeds' must each be an integer in 0..4294967295"),
        ({"out": ""}, "RunConfig: 'out' must not be empty"),
        ({"train": {"lr": float("nan")}}, "RunConfig.train: 'lr' must be a finite number > 0, got nan"),
        ({"train": {"simsiam": {"batch_size": 1}}}, "RunConfig.train['simsiam']: 'batch_size' must be an integer in 2.."),
        ({"views": {"crop_scale": (0.2,)}}, "RunConfig.views: 'crop_scale' must be [lo, hi]"),
        ({"heads": {"proj_dim": 0}}, "RunConfig.heads: 'proj_dim' must be an integer in 1..65536, got 0"),
    ],
)
def test_a_config_built_in_code_is_checked_at_resolve(change, message):
    with pytest.raises(SslbenchError) as e:
        RunConfig(preset="smoke", methods=["simsiam"], **change).resolved()
    assert str(e.value).startswith(message)


def test_a_methods_own_out_of_range_default_is_named_at_resolve():
    bad = dataclasses.replace(registry("methods").get("simsiam"), presets={"smoke": {"train": {"epochs": 0}}})
    with pytest.raises(SslbenchError, match=r"^'simsiam' at preset 'smoke' \[train\]: 'epochs' must be an integer"):
        RunConfig(preset="smoke").check_recipe(bad)


def test_every_builtin_recipe_is_within_the_bounds():
    trained = [n for n in registry("methods").names() if registry("methods").get(n).encoder == "trained"]
    for preset in registry("presets").names():
        RunConfig(methods=trained, preset=preset, protocols=["knn"]).resolved()


@pytest.mark.parametrize(
    "text, message",
    [
        ('[variants.v1]\nbase = "v1"\nloss = {cov_coeff = 2.0}\n', "[variants.v1]: variant 'v1' is its own base"),
        ('[variants.v1]\nbase = "v2"\nloss = {cov_coeff = 2.0}\n[variants.v2]\nbase = "v1"\nloss = {cov_coeff = 3.0}\n',
         "[variants]: the bases of variants 'v1' -> 'v2' -> 'v1' form a cycle"),
        (('[variants.a]\nbase = "b"\nloss = {cov_coeff = 2.0}\n[variants.b]\nbase = "c"\nloss = {cov_coeff = 2.0}\n'
          '[variants.c]\nbase = "a"\nloss = {cov_coeff = 2.0}\n'), "'a' -> 'b' -> 'c' -> 'a' form a cycle"),
    ],
)
def test_variant_cycles_are_named_as_cycles(tmp_path, text, message):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(SslbenchError) as e:
        load_toml(f)
    assert message in str(e.value) and "unknown method" not in str(e.value)


@pytest.fixture
def restore_methods():
    """Put the method registry back as it was after a test that registers variants."""
    methods = registry("methods")
    entries, sources = dict(methods._entries), dict(methods._sources)
    yield
    methods._entries, methods._sources = entries, sources


def test_a_variant_may_build_on_one_defined_later_in_the_file(tmp_path, restore_methods):
    f = tmp_path / "c.toml"
    f.write_text('[variants.late_child]\nbase = "late_parent"\nloss = {cov_coeff = 3.0}\n'
                 '[variants.late_parent]\nbase = "vicreg"\nloss = {cov_coeff = 2.0}\n')
    load_toml(f)
    child = registry("methods").get("late_child")
    assert child.base == "late_parent" and child.loss.cov_coeff == 3.0


def _fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "c.toml")
    return tmp_path / "c.toml"


def _big(tmp_path: Path) -> Path:
    (tmp_path / "c.toml").write_text("# padding\n" * 200_000)
    return tmp_path / "c.toml"


@pytest.mark.parametrize(
    "make, message",
    [
        (_fifo, "is not a regular file (a FIFO, device or socket)"),
        (lambda t: Path("/dev/zero"), "config file /dev/zero is not a regular file"),
        (lambda t: t, "is a directory"),
        (_big, "bytes, more than the 1048576-byte limit"),
    ],
)
def test_a_config_that_is_no_small_regular_file_is_refused_without_hanging(tmp_path, make, message):
    path = make(tmp_path)
    code = f"from sslbench.config import load_toml; load_toml({str(path)!r})"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1 and "SslbenchError: " in proc.stderr and message in proc.stderr


def test_a_field_added_later_is_out_of_the_identity_at_its_default():
    """Runs recorded before a field existed stay current while it keeps the old behaviour."""
    import dataclasses

    from sslbench.method import TrainConfig, identity_fields

    plain = identity_fields(TrainConfig())
    assert "per_view_forward" not in plain and "lars_eta" not in plain and plain["lr"] == TrainConfig().lr
    changed = identity_fields(dataclasses.replace(TrainConfig(), per_view_forward=True, lars_eta=0.001))
    assert changed["per_view_forward"] is True and changed["lars_eta"] == 0.001
