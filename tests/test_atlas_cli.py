"""``sslbench atlas`` end to end on a small synthetic --out written with the real writers:
the files it writes, what it prints, and its one-line errors for bad input."""

import dataclasses
import json

import pytest

from sslbench.layout import RunLayout
from sslbench.records import SweepInfo
from sslbench.training_log import append_row

TOTAL = 40


def _write_run(records, out, sweep, coords, seed, knn, status):
    config = {"method": "cell", "seed": seed, "sweep": {"name": sweep},
              "loss": {"var_coeff": coords["loss.var_coeff"]},
              "train": {"epochs": 2, "batch_size": coords.get("train.batch_size", 256)}}
    name = sweep + "-" + "-".join(f"{k.rpartition('.')[2]}_{v}" for k, v in coords.items())
    made = [records.make(name, seed, "knn", {"top1": knn}, base="vicreg"),
            records.make(name, seed, "linear", {"top1": knn + 0.05}, base="vicreg"),
            records.make(name, seed, "collapse", {"rankme": 40 * knn, "z_rankme": 30 * knn, "status": status},
                         base="vicreg")]
    records.write(out, [dataclasses.replace(r, run=dataclasses.replace(
        r.run, sweep=SweepInfo(sweep, dict(coords)), config={**config, "method": name})) for r in made])
    paths = RunLayout(out).run(name, seed)
    for step in range(4, TOTAL + 1, 4):  # collapsed runs read complete from 20% of training on
        read = "complete" if status == "complete" and step >= 8 else "healthy"
        append_row(paths.monitor_log, {"step": step, "epoch": step / 20, "total_steps": TOTAL, "monitor_every": 4,
                                       "probe_status": read, "probe_spread": 0.5, "probe_effective_dims": 5.0,
                                       "probe_uniformity": -2.0})


@pytest.fixture(scope="module")
def sweep_out(tmp_path_factory):
    from tests.conftest import RecordFactory

    out, records = tmp_path_factory.mktemp("atlas_out"), RecordFactory()
    for i, var in enumerate((0.0, 1.0, 5.0)):
        for seed in range(3):
            _write_run(records, out, "mu", {"loss.var_coeff": var}, seed, 0.6 + 0.05 * i + 0.01 * seed,
                       "complete" if var == 0.0 or (var == 1.0 and seed < 2) else "healthy")
    for var, batch in ((1.0, 128), (5.0, 128), (1.0, 512)):  # (5, 512) missing: a slice of one cell
        for seed in range(2):
            _write_run(records, out, "mu_b", {"loss.var_coeff": var, "train.batch_size": batch}, seed,
                       0.65 + 0.01 * seed, "complete" if var == 1.0 else "healthy")
    records.write(out, [records.make("vicreg", 0, "knn", {"top1": 0.7})])  # a plain method: left out, said so
    return out


def test_write_gives_markdown_json_and_figures(cli, sweep_out, tmp_path):
    rc, out, err = cli("atlas", str(sweep_out), "--write", str(tmp_path))
    assert rc == 0, err
    assert "atlas.md" in out and "figures" in out
    md = (tmp_path / "atlas.md").read_text()
    for heading in ("## Cells", "## 1-D slices", "## Interaction", "## Label-free readings", "## Early call"):
        assert heading in md
    assert "1 runs without sweep coordinates left out: vicreg/seed0" in md
    assert "mu_b: loss.var_coeff at train.batch_size=512 has 1 cell (loss.var_coeff=1.0)" in md
    doc = json.loads((tmp_path / "atlas.json").read_text())
    assert doc["schema_version"] == 1 and doc["n_runs"] == 15 and doc["metrics"] == ["knn", "linear"]
    cell = next(c for c in doc["cells"] if c["sweep"] == "mu" and c["coordinates"] == {"loss.var_coeff": 1.0})
    assert (cell["collapse"]["k"], cell["collapse"]["n"]) == (2, 3)
    (mu,) = [s for s in doc["slices"] if s["grid"] == "mu"]
    assert (mu["boundary"]["crossings"][0]["below"], mu["boundary"]["crossings"][0]["above"]) == (1.0, 5.0)
    assert any(e["grid"] == "vicreg:pooled" and e["by"] == "train.batch_size" for e in doc["effects"])
    for name in ("dose-mu-loss.var_coeff.png", "dose-mu_b-loss.var_coeff.png",
                 "phase-mu_b-loss.var_coeff-train.batch_size.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_write_it_prints_the_markdown(cli, sweep_out):
    rc, out, _ = cli("atlas", str(sweep_out))
    assert rc == 0 and out.startswith("# Collapse atlas") and "Target (call within the first 10%" in out


def test_results_without_sweep_coordinates_are_one_line_and_exit_2(cli, records, tmp_path):
    records.write(tmp_path, records.sweep({"vicreg": records.base_scores["vicreg"]}))
    rc, out, err = cli("atlas", str(tmp_path))
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and "none of the 2 runs" in err and "carries sweep coordinates" in err


@pytest.mark.parametrize("make", ["empty", "missing"])
def test_no_results_at_all_is_one_line_and_exit_2(cli, tmp_path, make):
    d = tmp_path / "out"
    if make == "empty":
        d.mkdir()
    rc, _, err = cli("atlas", str(d))
    assert rc == 2 and err.count("\n") == 1
    assert ("no test results under" if make == "empty" else "is not a directory") in err


def test_the_report_has_an_atlas_section_for_sweep_results(sweep_out, tmp_path):
    from sslbench.report import write_report

    page = write_report([sweep_out], tmp_path / "report.html").read_text()
    assert "<h2>Collapse atlas</h2>" in page and 'alt="P(collapse) of mu_b over' in page
