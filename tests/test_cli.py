"""End-to-end through the CLI: a smoke run, resume after SIGKILL, errors with exit code 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, cli_session):
    out = tmp_path_factory.mktemp("smoke")
    proc = cli_session("run", "--preset", "smoke", "--out", str(out), subprocess_=True)
    assert proc.rc == 0, proc.err
    return out, proc


def test_smoke_run_writes_results_and_leaderboard(smoke_run):
    out, proc = smoke_run
    table = pd.read_csv(out / "leaderboard.csv")
    assert set(table["method"]) == {"simsiam", "vicreg_mod", "random_init", "raw_pixels"}
    for col in ("knn.top1", "knn.top1_ci95", "linear.top1", "collapse.rankme", "n_seeds"):
        assert col in table
    assert table["knn.top1"].between(0, 1).all() and table["linear.top1"].between(0, 1).all()
    assert proc.out.startswith("| method ") and f"every column: {out / 'leaderboard.md'}" in proc.out
    assert "| method | rank | borda |" in (out / "leaderboard.md").read_text()  # the file keeps every column
    doc = json.loads((out / "simsiam" / "seed0" / "results" / "knn.json").read_text())
    assert doc["schema_version"] == 1
    assert len(doc["dataset"]["fingerprint"]) == 64
    assert doc["protocol"]["params"]["k"] == 20 and doc["protocol"]["params"]["temperature"] == 0.07
    assert doc["config"]["train"]["epochs"] == 3 and doc["versions"]["torch"]
    lines = (out / "simsiam" / "seed0" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines] == [1, 2, 3]
    assert {"loss", "std_l2", "images_per_s", "negative_cosine"} <= set(json.loads(lines[0]))


def test_rerun_is_a_no_op_and_leaderboard_rebuilds(smoke_run, cli):
    out, _ = smoke_run
    before = (out / "leaderboard.csv").read_text()
    proc = cli("run", "--preset", "smoke", "--out", str(out))
    assert proc.rc == 0 and "all results present" in proc.err
    assert (out / "leaderboard.csv").read_text() == before
    lb = cli("leaderboard", str(out))
    assert lb.rc == 0 and "vicreg_mod" in lb.out


def test_resume_after_sigkill_gives_identical_metrics(tmp_path, cli):
    args = ["run", "--preset", "smoke", "--methods", "vicreg_mod", "--floors", "", "--protocols", "knn,collapse"]
    full = cli(*args, "--out", str(tmp_path / "full"), subprocess_=True)
    assert full.rc == 0, full.err
    killed = cli(*args, "--out", str(tmp_path / "killed"), env={"SSLBENCH_FAULT": "after_epoch:2"}, subprocess_=True)
    assert killed.rc == -9
    assert not (tmp_path / "killed" / "vicreg_mod" / "seed0" / "results").exists()
    resumed = cli(*args, "--out", str(tmp_path / "killed"), subprocess_=True)
    assert resumed.rc == 0, resumed.err
    assert "resuming from epoch 2/3" in resumed.err
    run = Path("vicreg_mod/seed0")
    for proto in ("knn", "collapse"):
        a = json.loads((tmp_path / "full" / run / "results" / f"{proto}.json").read_text())
        b = json.loads((tmp_path / "killed" / run / "results" / f"{proto}.json").read_text())
        assert a["metrics"] == b["metrics"] and a["encoder_hash"] == b["encoder_hash"]
    epochs = [json.loads(ln)["epoch"] for ln in (tmp_path / "killed" / run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


@pytest.mark.parametrize(
    "args, match",
    [
        (["run", "--methods", "simsiam,vicreg_mdo", "--preset", "smoke"], "did you mean 'vicreg_mod'"),
        (["run", "--protocols", "knnn", "--preset", "smoke"], "did you mean 'knn'"),
        (["run", "--dataset", "fashion_mnist"], "did you mean 'fashion-mnist'"),
        (["ls", "method"], "did you mean 'methods'"),
    ],
)
def test_bad_names_exit_2_with_one_line(args, match, cli):
    proc = cli(*args, subprocess_=True)
    assert proc.rc == 2
    assert match in proc.err and "Traceback" not in proc.err
    assert len(proc.err.strip().splitlines()) == 1


def test_ls_lists_builtins(cli):
    proc = cli("ls")
    assert proc.rc == 0
    for name in ("simsiam", "vicreg_mod", "knn", "linear", "collapse", "fashion-mnist", "digits", "smoke", "quick"):
        assert name in proc.out


# ----------------------------------------------------------------------------- start-up, ls, small things

#: Run the CLI in a fresh interpreter, then print the heavy top-level modules it imported (on stderr).
_IMPORTS_PROBE = """
import sys
from sslbench.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as e:
    rc = e.code or 0
heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numpy', 'pandas', 'scipy', 'faiss', 'sklearn',
                                                         'matplotlib', 'baselines', 'protocols'})
print('HEAVY', ','.join(heavy), file=sys.stderr)
sys.exit(rc)
"""


@pytest.mark.parametrize(
    "args, rc",
    [
        (["--help"], 0),
        (["run", "--help"], 0),
        (["ls"], 0),
        (["run", "--preset", "smoke", "--methods", "simsaim", "--epochs", "2", "--seeds", "0,1"], 2),
        (["run", "--preset", "smokey"], 2),
        (["run", "--protocols", "knn,colapse"], 2),
        (["run", "--dataset", "imagefolder_:x"], 2),
        (["eval", "--features", "x.npz", "--protocols", "knnn"], 2),
        (["eval", "--encoder", "x.pt", "--arch", "resnet19", "--dataset", "digits"], 2),
    ],
)
def test_help_ls_and_name_checks_import_nothing_heavy(args, rc, tmp_path):
    proc = subprocess.run([sys.executable, "-c", _IMPORTS_PROBE, *args, *(["--out", str(tmp_path)] if args[0] == "run" else [])],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
                          check=False)
    assert proc.returncode == rc, proc.stderr
    assert "HEAVY \n" in proc.stderr, proc.stderr.splitlines()[-1]
    if rc == 2:
        assert "did you mean" in proc.stderr and "Traceback" not in proc.stderr


def test_a_bad_number_is_still_refused_after_the_names(cli):
    proc = cli("run", "--preset", "smoke", "--epochs", "0")
    assert proc.rc == 2 and "argument --epochs: must be an integer in 1..100000, got 0" in proc.err
    assert len(proc.err.strip().splitlines()) == 1
    proc = cli("run", "--preset", "smoke", "--seeds", "0,-1")
    assert proc.rc == 2 and "argument --seeds" in proc.err


def test_numbers_reach_the_command_converted(monkeypatch, cli):
    seen = {}
    monkeypatch.setattr("sslbench.cli._cmd_eval", lambda args: seen.update(vars(args)) or 0)
    assert cli("eval", "--features", "f.npz", "--seed", "1e3", "--width", "16").rc == 0
    assert seen["seed"] == 1000 and seen["width"] == 16


def test_ls_aligns_names_and_shows_plain_text(cli):
    proc = cli("ls")
    assert proc.rc == 0
    assert "``" not in proc.out and ":class:" not in proc.out
    assert "FewShot on a transfer set" in proc.out and "train (50000, 3, 32, 32)" in proc.out
    kinds = _rows_by_kind(proc.out)
    assert list(kinds) == ["methods", "protocols", "protocol_sets", "datasets", "backbones", "presets"]
    for rows in kinds.values():  # a kind's summaries all start in one column, two spaces after its longest name
        width = max(len(ln.split()[0]) for ln in rows)
        assert all(ln[2 + width:4 + width] == "  " and ln[4 + width] != " " for ln in rows), rows
    assert any(ln.startswith("  barlow_twins_lambda05  Barlow") for ln in kinds["methods"])


def _rows_by_kind(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    kind = ""
    for ln in text.splitlines():
        if ln.startswith("  "):
            out[kind].append(ln)
        else:
            kind = ln.rstrip(":")
            out[kind] = []
    return out


def test_ls_into_a_closed_pipe_ends_quietly():
    proc = subprocess.Popen([sys.executable, "-m", "sslbench", "ls"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    proc.stdout.close()  # the reader is gone before the first line (as `sslbench ls | head -0`)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


@pytest.mark.parametrize("args", [["--debug", "ls", "method"], ["ls", "method", "--debug"], ["ls", "--debug", "method"]])
def test_debug_before_or_after_the_command_shows_the_traceback(args, cli):
    from sslbench.errors import SslbenchError

    with pytest.raises(SslbenchError, match="did you mean 'methods'"):
        cli(*args)
    assert cli("ls", "method").rc == 2


@pytest.mark.parametrize("command, line", [("run", "Pretrain methods, evaluate protocols"),
                                           ("leaderboard", "Rebuild the leaderboard"), ("compare", "Regression gate")])
def test_command_help_has_a_description(command, line, cli):
    proc = cli(command, "--help")
    assert proc.rc == 0 and line in proc.out
