"""Fuzz: damaged result JSONs and leaderboard.json files, and compare's tolerances, through the CLI.

Every reader of results (``leaderboard``, ``report``, ``analyze``, ``compare``, ``status``
and ``run`` itself) gets a result record with up to three fields replaced, removed or nested
deep, or bytes that are no JSON object at all. Each call must exit 0, 1 or 2 without a
traceback, exit 2 on a document that breaks the schema, and write nothing but its own
outputs (:meth:`conftest.Sandbox.call`).
"""

import json
import shutil
import string
from pathlib import Path

import pytest
from conftest import damaged
from hypothesis import given, settings
from hypothesis import strategies as st

UNIT = settings.default.max_examples
#: Fields a result must have, with the type it must have there (None: the schema version, 1).
REQUIRED = {"schema_version": None, "method": str, "seed": int, "protocol": dict, "metrics": dict, "dataset": dict}
RUN = ["run", "--preset", "smoke", "--methods", "", "--floors", "raw_pixels", "--protocols", "knn", "--out", "out"]

@pytest.fixture(scope="module")
def floor_run(tmp_path_factory, cli_session):
    """A finished ``raw_pixels`` x knn run directory (no training: a fast base to damage)."""
    base = tmp_path_factory.mktemp("floor")
    res = cli_session(*RUN[:-1], str(base / "out"))
    assert res.rc == 0, res.err
    return base / "out"


def _sweep_dir(box, records) -> Path:
    runs = records.write(box.root / "runs", records.sweep(records.base_scores))
    (runs / "NOTES.md").write_text("mine")
    (runs / "vicreg" / "seed0" / "notes.txt").write_text("mine")
    return runs


COMMANDS = {  # command -> (argv, where it may write)
    "leaderboard": (["leaderboard", "runs"], None),
    "leaderboard_write": (["leaderboard", "runs", "--write", "w", "--format", "json"], "w"),
    "leaderboard_grouped": (["leaderboard", "runs", "--group-by", "loss.var_coeff", "--all"], None),
    "report": (["report", "runs", "--out", "w/report.html"], "w"),
    "analyze": (["analyze", "runs", "--write", "w"], "w"),
    "compare": (["compare", "runs", "runs/vicreg/seed1/results/knn.json", "--json", "w/c.json"], "w"),
    "compare_back": (["compare", "runs/vicreg/seed0/results/linear.json", "runs"], None),
    "status": (["status", "runs"], None),
}


@settings(max_examples=4 * UNIT)
@given(data=st.data(), command=st.sampled_from(sorted(COMMANDS)), target=st.sampled_from(["knn", "linear", "collapse"]))
def test_a_damaged_result_is_read_or_refused_by_every_reader(sandboxes, records, data, command, target):
    box = sandboxes()
    runs = _sweep_dir(box, records)
    path = runs / "vicreg" / "seed0" / "results" / f"{target}.json"
    raw, breaks = data.draw(damaged(json.loads(path.read_text()), REQUIRED))
    path.write_bytes(raw)
    argv, out = COMMANDS[command]
    reads_it = command != "status" and (command != "compare_back" or target == "linear")
    box.call(*argv, out=out, keep=(runs / "NOTES.md", runs / "vicreg" / "seed0" / "notes.txt", path),
             malformed=breaks and reads_it)


@settings(max_examples=2 * UNIT)
@given(data=st.data(), own=st.booleans())
def test_run_reads_or_recomputes_a_damaged_result(sandboxes, floor_run, data, own):
    """``run`` recomputes a damaged result of its own runs; another run's breaks the final leaderboard (exit 2)."""
    box = sandboxes()
    out = shutil.copytree(floor_run, box.root / "out")
    mine = out / "raw_pixels" / "seed0" / "results" / "knn.json"
    raw, breaks = data.draw(damaged(json.loads(mine.read_text()), REQUIRED))
    target = mine if own else out / "other" / "seed0" / "results" / "knn.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(raw)
    (out / "NOTES.md").write_text("mine")
    box.call(*RUN, out="out", keep=(out / "NOTES.md",) if own else (out / "NOTES.md", target),
             malformed=breaks and not own)


# ----------------------------------------------------------------------------- compare's inputs


def _leaderboard(box, records) -> dict:
    _sweep_dir(box, records)
    assert box.call("leaderboard", "runs", "--write", "lb", out="lb").rc == 0
    return json.loads((box.root / "lb" / "leaderboard.json").read_text())


@settings(max_examples=2 * UNIT)
@given(data=st.data(), side=st.sampled_from(["baseline", "current"]))
def test_compare_reads_or_refuses_a_damaged_leaderboard(sandboxes, records, data, side):
    box = sandboxes()
    doc = _leaderboard(box, records)
    raw, _ = data.draw(damaged(doc, {}))
    (box.root / "bad.json").write_bytes(raw)
    argv = ["compare", "bad.json", "lb"] if side == "baseline" else ["compare", "lb", "bad.json"]
    box.call(*argv, keep=(box.root / "bad.json",))


tolerance_text = st.one_of(
    st.sampled_from(["0", "0.02", "1e-3", "5%", "nan", "inf", "-1", "1e400", "-0", "0x10", "1_0", " 2 ", "", "%", "nan%",
                     "inf%", "1e308%", "10**400"]),
    st.floats().map(str), st.integers().map(str), st.text(alphabet=string.digits + ".-+e%na ", max_size=8))
patterns = st.sampled_from(["knn.*", "*", "collapse.rankme", "", "=", "[", "linear.top1", "*.*"]) | st.text(max_size=5)


@settings(max_examples=2 * UNIT)
@given(abs_tol=st.none() | tolerance_text, ci_mult=st.none() | tolerance_text,
       rules=st.lists(st.tuples(patterns, st.sampled_from(["=", ""]), tolerance_text), max_size=3),
       metrics=st.none() | st.sampled_from(["main", "knn", "knn.top1", "nope", ",", "collapse.*"]))
def test_compare_tolerances_are_used_or_refused(sandboxes, records, abs_tol, ci_mult, rules, metrics):
    box = sandboxes()
    _leaderboard(box, records)
    argv = ["compare", "lb", "runs"]
    argv += [f"--abs-tol={abs_tol}"] if abs_tol is not None else []
    argv += [f"--ci-mult={ci_mult}"] if ci_mult is not None else []
    argv += [f"--tol={p}{sep}{v}" for p, sep, v in rules]
    argv += [f"--metrics={metrics}"] if metrics is not None else []
    res = box.call(*argv)
    if res.rc == 0:  # accepted: every number was a finite tolerance >= 0
        for v in [abs_tol, ci_mult, *(v for _, _, v in rules)]:
            if v is not None:
                x = float(v.strip().removesuffix("%"))
                assert x >= 0 and x < float("inf")
