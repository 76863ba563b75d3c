"""Feature extraction and its cache: memory-mapped arrays, projector outputs from the backbone
features, positive pairs, the transfer set, no forward pass on a hit, damaged entries redone."""

import numpy as np
import pytest
import torch
from torch import nn

from sslbench.augment import TwoViews
from sslbench.backbones import build_backbone
from sslbench.data import load_dataset
from sslbench.data.transfer import match_images, transfer_set
from sslbench.errors import SslbenchError
from sslbench.features import COMPLETE, Extras, cached_features, extract
from sslbench.heads import mlp
from sslbench.method import ViewConfig


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _encoder(digits):
    torch.manual_seed(0)
    return build_backbone("convnet", digits.channels, 8), mlp([64, 32, 16])


def _counting(module: nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_cache_hit_runs_no_forward_pass_and_memory_maps(digits, tmp_path):
    backbone, projector = _encoder(digits)
    views = TwoViews(ViewConfig(), ViewConfig(), digits.mean, digits.std)
    extras = Extras(projector=projector, views=views, pairs=100, transfer=transfer_set(digits, digits), transfer_name="digits")
    first, h1, hit1 = cached_features(backbone, digits, tmp_path, extras=extras)
    calls = _counting(backbone)
    second, h2, hit2 = cached_features(backbone, digits, tmp_path, extras=extras)
    assert (hit1, hit2) == (False, True) and h1 == h2 and calls[0] == 0
    assert isinstance(second.train.x, np.memmap)
    for a, b in ((first.train.z, second.train.z), (first.test.z, second.test.z), (first.pairs.xa, second.pairs.xa),
                 (first.pairs.xb, second.pairs.xb), (first.pairs.za, second.pairs.za), (first.pairs.zb, second.pairs.zb),
                 (first.transfer.x, second.transfer.x), (first.transfer.y, second.transfer.y)):
        np.testing.assert_array_equal(a, b)
    assert first.pairs.xa.shape == (100, first.train.x.shape[1])
    assert first.views.x.shape == (256, 8, first.train.x.shape[1]) and first.views.z.shape == (256, 8, 16)
    np.testing.assert_array_equal(first.views.z, second.views.z)
    assert first.transfer.x.shape == (len(digits.train_images) + len(digits.test_images), first.train.x.shape[1])
    assert [p.name for p in tmp_path.iterdir()] == [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")]


def test_projector_outputs_equal_the_composed_network(digits, tmp_path):
    backbone, projector = _encoder(digits)
    fs, _, _ = cached_features(backbone, digits, tmp_path, extras=Extras(projector=projector))
    composed = extract(nn.Sequential(backbone, projector), digits.test_images, digits.mean, digits.std)
    np.testing.assert_allclose(fs.test.z, composed, rtol=1e-5, atol=1e-5)
    assert fs.pairs is None  # no views, no pairs


def test_pairs_are_two_different_views_and_the_recipe_changes_the_key(digits, tmp_path):
    backbone, _ = _encoder(digits)
    views = TwoViews(ViewConfig(), ViewConfig(), digits.mean, digits.std)
    fs, _, _ = cached_features(backbone, digits, tmp_path, extras=Extras(views=views, pairs=64))
    assert not np.allclose(fs.pairs.xa, fs.pairs.xb)
    weak = TwoViews(ViewConfig(crop_scale=(0.9, 1.0)), ViewConfig(crop_scale=(0.9, 1.0)), digits.mean, digits.std)
    _, _, hit = cached_features(backbone, digits, tmp_path, extras=Extras(views=weak, pairs=64))
    assert not hit
    assert len([p for p in tmp_path.iterdir()]) == 2


def test_damaged_entry_is_recomputed(digits, tmp_path):
    backbone, _ = _encoder(digits)
    fs, _, _ = cached_features(backbone, digits, tmp_path)
    (entry,) = list(tmp_path.iterdir())
    (entry / "test_x.npy").write_bytes(b"garbage")
    again, _, hit = cached_features(backbone, digits, tmp_path)
    assert not hit and (entry / COMPLETE).exists()
    np.testing.assert_array_equal(fs.test.x, again.test.x)


def test_match_images_converts_channels_and_size():
    rgb = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    rgb[:, 0] = 30
    rgb[:, 1] = 60
    rgb[:, 2] = 90
    gray = match_images(rgb, 1, 16)
    assert gray.shape == (2, 1, 16, 16) and gray.dtype == torch.uint8 and int(gray.unique()) == 60
    assert match_images(gray, 3, 16).shape == (2, 3, 16, 16)


def test_a_same_size_bit_flip_in_a_cached_array_is_caught_and_recomputed(digits, tmp_path, capsys):
    backbone, _ = _encoder(digits)
    fs, _, _ = cached_features(backbone, digits, tmp_path, run="r")
    (entry,) = list(tmp_path.iterdir())
    raw = bytearray((entry / "train_x.npy").read_bytes())
    raw[-7] ^= 0x40  # one bit of one feature, file size unchanged
    (entry / "train_x.npy").write_bytes(bytes(raw))
    again, _, hit = cached_features(backbone, digits, tmp_path, run="r")
    assert not hit and "r: cached features in" in capsys.readouterr().err
    np.testing.assert_array_equal(fs.train.x, again.train.x)
    third, _, hit = cached_features(backbone, digits, tmp_path, run="r")
    assert hit  # healed: the rewritten entry is trusted again


@pytest.mark.parametrize("manifest", ["5", "[]", '["train_x", "test_x"]', '{"version": 2, "arrays": 7}', "\xff"])
def test_a_malformed_cache_manifest_is_recomputed_not_a_traceback(digits, tmp_path, manifest, capsys):
    backbone, _ = _encoder(digits)
    fs, _, _ = cached_features(backbone, digits, tmp_path)
    (entry,) = list(tmp_path.iterdir())
    (entry / COMPLETE).write_bytes(manifest.encode("latin-1"))
    again, _, hit = cached_features(backbone, digits, tmp_path)
    assert not hit and "damaged" in capsys.readouterr().err
    np.testing.assert_array_equal(fs.test.x, again.test.x)


def test_a_short_write_of_the_cache_reads_as_a_full_disk(digits, tmp_path, monkeypatch):
    backbone, _ = _encoder(digits)

    def short_write(*args, **kwargs):
        raise OSError("46080 requested and 32736 written")

    monkeypatch.setattr(np, "save", short_write)
    with pytest.raises(SslbenchError, match="No space left on device; free some space"):
        cached_features(backbone, digits, tmp_path)
