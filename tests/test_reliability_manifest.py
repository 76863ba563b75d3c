"""``<out>/manifest.json`` records every invocation; a leaderboard that mixes data or protocol versions says so."""

import json
import shlex
import socket

from sslbench.manifest import VERSION_KEYS, read_manifest

ARGS = ["run", "--preset", "smoke", "--methods", "", "--floors", "raw_pixels", "--protocols", "knn"]


def test_every_invocation_is_appended_with_what_made_the_numbers(tmp_path, monkeypatch, cli):
    out = tmp_path / "out"
    argv = [*ARGS, "--seeds", "0,1", "--out", str(out)]
    monkeypatch.setattr("sys.argv", ["sslbench", *argv])
    assert cli(*argv).rc == 0 and cli(*argv).rc == 0
    history = read_manifest(out)["invocations"]
    assert len(history) == 2
    first, second = history
    assert first["command"] == shlex.join(["sslbench", *argv]) and first["argv"][1:] == argv
    assert set(first["versions"]) == set(VERSION_KEYS) and all(first["versions"].values())
    assert first["git"] and first["host"] == socket.gethostname() and first["pid"] > 0
    assert first["seeds"] == [0, 1] and first["floors"] == ["raw_pixels"] and first["protocols"] == {"knn": "1"}
    assert first["data"]["name"] == "digits" and len(first["data"]["fingerprint"]) == 64
    assert first["status"] == second["status"] == "finished" and first["failures"] == 0
    assert first["started"] <= first["ended"] <= second["started"] and second["duration_s"] >= 0
    result = json.loads((out / "raw_pixels" / "seed1" / "results" / "knn.json").read_text())
    assert result["dataset"]["fingerprint"] == first["data"]["fingerprint"]


def test_mixed_fingerprints_and_protocol_versions_are_warned_on_stderr(tmp_path, cli):
    out = tmp_path / "out"
    res = cli(*ARGS, "--out", str(out))
    assert res.rc == 0 and "WARNING" not in res.err
    doc = json.loads((out / "raw_pixels" / "seed0" / "results" / "knn.json").read_text())
    doc["method"] = "elsewhere"
    doc["dataset"]["fingerprint"] = "f" * 64
    doc["protocol"]["version"] = "0"
    (out / "elsewhere" / "seed0" / "results").mkdir(parents=True)
    (out / "elsewhere" / "seed0" / "results" / "knn.json").write_text(json.dumps(doc))
    res = cli(*ARGS, "--out", str(out))
    err = res.err
    assert res.rc == 0 and "sslbench: WARNING: results come from 2 different data fingerprints" in err
    assert "sslbench: WARNING: knn results come from different protocol versions" in err


def test_an_unreadable_manifest_is_kept_aside_not_lost(tmp_path, cli):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("{ half a manifest")
    res = cli(*ARGS, "--out", str(out))
    assert res.rc == 0 and "moved it to" in res.err
    (aside,) = out.glob("manifest.json.unreadable-*")
    assert aside.read_text() == "{ half a manifest"
    assert [h["status"] for h in read_manifest(out)["invocations"]] == ["finished"]
