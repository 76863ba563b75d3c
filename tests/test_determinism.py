"""Determinism on CPU: the same smoke command with the same seed, run twice, gives the same metrics."""

import json
import math
from concurrent.futures import ThreadPoolExecutor

ARGS = ["run", "--preset", "smoke", "--methods", "simsiam", "--floors", "", "--epochs", "1",
        "--protocols", "knn,linear,collapse", "--seeds", "0"]


def test_same_command_twice_gives_the_same_metrics(tmp_path, cli):
    # The two runs go side by side (one thread each, the same as each other), in separate output
    # directories, so nothing is shared: no checkpoint, no feature cache.
    outs = [tmp_path / "a", tmp_path / "b"]
    with ThreadPoolExecutor(2) as pool:
        procs = list(pool.map(lambda o: cli(*ARGS, "--out", str(o), env={"OMP_NUM_THREADS": "1"}, subprocess_=True,
                                            timeout=300), outs))
    for p in procs:
        assert p.rc == 0, p.err
    paths = sorted((outs[0] / "simsiam" / "seed0" / "results").glob("*.json"))
    assert [p.stem for p in paths] == ["collapse", "knn", "linear"]
    for pa in paths:
        a, b = json.loads(pa.read_text()), json.loads((outs[1] / pa.relative_to(outs[0])).read_text())
        assert a["encoder_hash"] == b["encoder_hash"], f"{pa.stem}: the trained encoders differ"
        assert a["metrics"].keys() == b["metrics"].keys()
        for k, va in a["metrics"].items():
            vb = b["metrics"][k]
            if isinstance(va, float):
                assert math.isclose(va, vb, rel_tol=0, abs_tol=1e-6), f"{pa.stem}.{k}: {va!r} vs {vb!r}"
            else:
                assert va == vb, f"{pa.stem}.{k}: {va!r} vs {vb!r}"
    # the same check through the gate: nothing may move by more than 1e-6
    gate = cli("compare", str(outs[0]), str(outs[1]), "--abs-tol", "1e-6", "--ci-mult", "0", "--tol", "*=1e-6")
    assert gate.rc == 0 and " 0 improved, 0 REGRESSION, 0 missing" in gate.out
