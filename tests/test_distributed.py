"""Losses stay correct on 1 or N processes: a real 2-process gloo group on CPU, no mocks.

One spawned job per module (:func:`dist_results`) runs every check on both
ranks and saves what each rank saw; the tests compare it with the 1-process
computation on the global batch (float64, global batch B = 16 split 2 x 8).

The contract under test (``sslbench/distributed.py``): DDP averages parameter
gradients over ranks, so

- loss: gathered losses (VICReg, Barlow Twins) return the global-batch loss on
  every rank; per-sample losses (SimSiam, BYOL) and NT-Xent (each rank scores
  its own anchors against the global negatives) return values whose mean over
  ranks is the global-batch loss;
- gradient: rank r's gradient on its own inputs, divided by world_size (DDP's
  average), equals the rows of the 1-process gradient that belong to rank r.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from baselines.byol import byol_loss
from baselines.losses import barlow_twins_loss, nt_xent_loss, symmetric_negative_cosine, vicreg_loss
from baselines.losses.vicreg import VICRegConfig, combine, vicreg_terms
from sslbench import distributed

WORLD = 2
B = 16  # global batch
D = 6
N = B // WORLD
TOL = 1e-5

# ---------------------------------------------------------------- cases


def _inputs() -> dict[str, torch.Tensor]:
    """Global float64 inputs, identical in every process (seeded)."""
    g = torch.Generator().manual_seed(0)
    za = 0.5 * torch.randn(B, D, generator=g, dtype=torch.float64)  # std < 1: the variance hinge is active
    zb = za + 0.3 * torch.randn(B, D, generator=g, dtype=torch.float64)
    p1, p2 = (torch.randn(B, D, generator=g, dtype=torch.float64) for _ in range(2))
    return {"za": za, "zb": zb, "p1": p1, "p2": p2}


class _NaiveGather(torch.autograd.Function):
    """The pitfall: all_gather whose backward returns only this rank's slice (no all_reduce)."""

    @staticmethod
    def forward(ctx, x):
        out = [torch.empty_like(x) for _ in range(torch.distributed.get_world_size())]
        torch.distributed.all_gather(out, x.contiguous())
        ctx.r, ctx.n = torch.distributed.get_rank(), x.shape[0]
        return torch.cat(out)

    @staticmethod
    def backward(ctx, grad):
        return grad[ctx.r * ctx.n : (ctx.r + 1) * ctx.n]


def _naive(x: torch.Tensor, gather: bool) -> torch.Tensor:
    return _NaiveGather.apply(x) if gather and distributed.is_distributed() else x


_CORR = VICRegConfig(cov_mode="correlation")

# name -> (how the rank values combine into the global loss, loss(inputs, gather))
CASES: dict[str, tuple[str, Callable[[dict[str, torch.Tensor], bool], torch.Tensor]]] = {
    "simsiam": ("mean", lambda t, g: symmetric_negative_cosine(t["p1"], t["p2"], t["za"], t["zb"])),
    "simsiam_nosg": (
        "mean",
        lambda t, g: symmetric_negative_cosine(t["p1"], t["p2"], t["za"], t["zb"], stop_gradient=False),
    ),
    "byol": ("mean", lambda t, g: byol_loss(t["p1"], t["p2"], t["za"], t["zb"])),
    "vicreg": ("same", lambda t, g: vicreg_loss(t["za"], t["zb"], gather=g)),
    "vicreg_correlation": ("same", lambda t, g: combine(vicreg_terms(t["za"], t["zb"], _CORR, gather=g), _CORR)),
    "barlow_twins": ("same", lambda t, g: barlow_twins_loss(t["za"], t["zb"], gather=g)),
    "nt_xent_t0.5": ("mean", lambda t, g: nt_xent_loss(t["za"], t["zb"], 0.5, gather=g)),
    "nt_xent_t0.1": ("mean", lambda t, g: nt_xent_loss(t["za"], t["zb"], 0.1, gather=g)),
}

# negative controls: the same losses on a naive gather (the bug docs/reference/distributed.md names)
CONTROLS: dict[str, Callable[[dict[str, torch.Tensor], bool], torch.Tensor]] = {
    "vicreg": lambda t, g: vicreg_loss(_naive(t["za"], g), _naive(t["zb"], g)),
    "barlow_twins": lambda t, g: barlow_twins_loss(_naive(t["za"], g), _naive(t["zb"], g)),
}

MODELS = ["simsiam", "byol", "vicreg", "vicreg_mod", "barlow_twins", "simclr"]


def _run(fn, inputs: dict[str, torch.Tensor], rows: slice, gather: bool) -> dict:
    leaves = {k: v[rows].clone().requires_grad_(True) for k, v in inputs.items()}
    loss = fn(leaves, gather)
    loss.backward()
    return {"loss": loss.item(), "grads": {k: v.grad for k, v in leaves.items()}}


def _model_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return tuple(torch.randn(B, 1, 8, 8, generator=g, dtype=torch.float64) for _ in range(2))


def _run_model(name: str, rows: slice) -> dict:
    """One method model in eval mode (BN on running stats, so per-sample), float64."""
    from sslbench.backbones import build_backbone
    from sslbench.registry import registry

    method = registry("methods").get(name)
    _, heads = method.resolve("smoke")
    torch.manual_seed(0)
    model = method.build(build_backbone("convnet", 1, 4), heads, method.loss).double().eval()
    v1, v2 = _model_inputs()
    out = model(v1[rows], v2[rows])
    out.loss.backward()
    return {
        "loss": out.loss.item(),
        "grads": {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None},
    }


# ---------------------------------------------------------------- the 2-process job


def _worker(r: int, port: int, out_dir: str) -> None:
    env = {"RANK": r, "LOCAL_RANK": r, "WORLD_SIZE": WORLD, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
    os.environ.update({k: str(v) for k, v in env.items()})
    torch.set_num_threads(1)
    res: dict = {"init": distributed.init_from_env("cpu")}
    res["meta"] = {
        "is_distributed": distributed.is_distributed(),
        "rank": distributed.rank(),
        "world_size": distributed.world_size(),
        "is_main": distributed.is_main(),
    }
    inputs = _inputs()
    rows = slice(r * N, (r + 1) * N)
    res["cases"] = {name: _run(fn, inputs, rows, gather=True) for name, (_, fn) in CASES.items()}
    res["controls"] = {name: _run(fn, inputs, rows, gather=True) for name, fn in CONTROLS.items()}
    res["models"] = {name: _run_model(name, rows) for name in MODELS}

    # gather_with_grad with unequal sizes (3 and 5 rows), a rank-dependent loss on the gathered tensor
    x_all = torch.arange(8 * 3, dtype=torch.float64).reshape(8, 3) / 10
    sizes = [3, 5]
    start = sum(sizes[:r])
    x = x_all[start : start + sizes[r]].clone().requires_grad_(True)
    y = distributed.gather_with_grad(x)
    ((r + 1.0) * y.pow(2)).sum().backward()
    x2 = x_all[start : start + sizes[r]].clone().requires_grad_(True)
    y2 = distributed.gather_with_grad(x2, sizes=sizes)
    ((r + 1.0) * y2.pow(2)).sum().backward()
    res["gather"] = {"y": y.detach(), "grad": x.grad, "y_sizes": y2.detach(), "grad_sizes": x2.grad}

    # all_gather_no_grad: unequal sizes, int64 labels, an empty shard
    feats = torch.randn(sizes[r], 4, dtype=torch.float32, requires_grad=True)
    labels = torch.arange(start, start + sizes[r])
    empty_or_not = torch.full((4 if r == 0 else 0, 2), float(r + 1))
    res["no_grad"] = {
        "feats_local": feats.detach(),
        "feats": distributed.all_gather_no_grad(feats * 2),
        "labels": distributed.all_gather_no_grad(labels),
        "empty": distributed.all_gather_no_grad(empty_or_not),
    }
    distributed.barrier()
    torch.save(res, Path(out_dir) / f"rank{r}.pt")
    distributed.destroy()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dist_results(tmp_path_factory) -> list[dict]:
    """Run :func:`_worker` on a real 2-process gloo group once; per-rank results."""
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("dist")
    ctx = mp.start_processes(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + 180
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
            pytest.fail("2-process gloo job timed out")
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _reference(fn) -> dict:
    return _run(fn, _inputs(), slice(0, B), gather=False)


def _rows(r: int) -> slice:
    return slice(r * N, (r + 1) * N)


def _check_ddp_average(rank_grads: list[dict], ref_grads: dict, rows: Callable[[int], slice] | None) -> None:
    """Rank r's gradient / world_size (DDP's average) equals the 1-process gradient (rows of rank r)."""
    for k, ref in ref_grads.items():
        if ref is None:
            assert all(g[k] is None for g in rank_grads), k
            continue
        if rows is None:  # parameters: DDP averages the ranks' gradients
            avg = sum(g[k] for g in rank_grads) / WORLD
            torch.testing.assert_close(avg, ref, atol=TOL, rtol=TOL, msg=k)
        else:  # inputs: each rank owns its rows
            for r, g in enumerate(rank_grads):
                torch.testing.assert_close(g[k] / WORLD, ref[rows(r)], atol=TOL, rtol=0, msg=f"{k} rank {r}")


# ---------------------------------------------------------------- tests


def test_group_is_real(dist_results):
    for r, res in enumerate(dist_results):
        assert res["init"] is True
        assert res["meta"] == {"is_distributed": True, "rank": r, "world_size": WORLD, "is_main": r == 0}


@pytest.mark.parametrize("name", list(CASES))
def test_loss_and_gradients_match_one_process(dist_results, name):
    how, fn = CASES[name]
    ref = _reference(fn)
    per_rank = [res["cases"][name] for res in dist_results]
    values = torch.tensor([p["loss"] for p in per_rank], dtype=torch.float64)
    if how == "same":  # gathered batch statistics: every rank returns the global loss
        torch.testing.assert_close(values, torch.full_like(values, ref["loss"]), atol=TOL, rtol=0)
    else:  # per-sample / local anchors: the mean over ranks is the global loss
        assert values.mean().item() == pytest.approx(ref["loss"], abs=TOL)
        assert (values - values.mean()).abs().max() > 1e-3  # and the ranks really saw different data
    _check_ddp_average([p["grads"] for p in per_rank], ref["grads"], _rows)


@pytest.mark.parametrize("name", list(CONTROLS))
def test_naive_gather_gives_wrong_gradients(dist_results, name):
    """Negative control: without the all_reduce in backward, the check above fails ..."""
    ref = _reference(CONTROLS[name])
    per_rank = [res["controls"][name] for res in dist_results]
    assert all(p["loss"] == pytest.approx(ref["loss"], abs=TOL) for p in per_rank)  # the value is right
    with pytest.raises(AssertionError):
        _check_ddp_average([p["grads"] for p in per_rank], ref["grads"], _rows)
    # ... because each rank's gradient is the global one, which DDP then divides by world_size
    for r, p in enumerate(per_rank):
        for k in ("za", "zb"):
            torch.testing.assert_close(p["grads"][k], ref["grads"][k][_rows(r)], atol=TOL, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_method_models_gather_where_needed(dist_results, name):
    """End to end through each method's model (eval-mode BN, so per-sample up to the loss):
    the mean over ranks of the loss and of the parameter gradients is the 1-process one."""
    ref = _run_model(name, slice(0, B))
    per_rank = [res["models"][name] for res in dist_results]
    assert sum(p["loss"] for p in per_rank) / WORLD == pytest.approx(ref["loss"], abs=TOL)
    assert set(ref["grads"]) == set(per_rank[0]["grads"])
    _check_ddp_average([p["grads"] for p in per_rank], ref["grads"], None)


def test_gather_with_grad_unequal_sizes(dist_results):
    x_all = torch.arange(8 * 3, dtype=torch.float64).reshape(8, 3) / 10
    # rank s's loss is (s + 1) * sum(y^2): d/dx_r of the sum over ranks = 2 * (1 + 2) * x_r
    expected_grad = 2 * 3.0 * x_all
    starts = [0, 3, 8]
    for r, res in enumerate(dist_results):
        g = res["gather"]
        for suffix in ("", "_sizes"):
            torch.testing.assert_close(g["y" + suffix], x_all, atol=0, rtol=0)
            torch.testing.assert_close(g["grad" + suffix], expected_grad[starts[r] : starts[r + 1]], atol=1e-12, rtol=0)


def test_all_gather_no_grad_unequal_sizes(dist_results):
    feats = torch.cat([res["no_grad"]["feats_local"] for res in dist_results])
    for res in dist_results:
        ng = res["no_grad"]
        assert not ng["feats"].requires_grad
        torch.testing.assert_close(ng["feats"], 2 * feats, atol=0, rtol=0)
        assert ng["labels"].dtype == torch.int64 and ng["labels"].tolist() == list(range(8))
        torch.testing.assert_close(ng["empty"], torch.ones(4, 2), atol=0, rtol=0)


def test_helpers_without_a_process_group(monkeypatch):
    assert not distributed.is_distributed()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    x = torch.randn(3, 2, requires_grad=True)
    assert distributed.gather_with_grad(x) is x
    assert torch.equal(distributed.all_gather_no_grad(x), x) and not distributed.all_gather_no_grad(x).requires_grad
    assert distributed.all_gather_sizes(3) == [3]
    distributed.barrier()
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.init_from_env("cpu") is False
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.init_from_env("cpu") is False
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        distributed.init_from_env("cpu")
    assert not distributed.is_distributed()


@pytest.mark.parametrize("name", list(CASES))
def test_gather_flag_is_identity_without_a_process_group(name):
    _, fn = CASES[name]
    inputs = _inputs()
    assert fn(inputs, True).item() == fn(inputs, False).item()


def test_two_process_smoke_run_end_to_end(tmp_path):
    """`torchrun --nproc-per-node 2 -m sslbench run` trains with DDP (gloo) and rank 0 alone writes."""
    import json
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(port), "-m", "sslbench", "run", "--preset", "smoke", "--methods", "vicreg,simclr",
           "--references", "", "--protocols", "knn,collapse", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("| method |") == 1  # one leaderboard, from rank 0
    for method in ("vicreg", "simclr"):
        run = tmp_path / method / "seed0"
        log = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in log] == [1, 2, 3] and all(r["world_size"] == 2 for r in log)
        knn = json.loads((run / "results" / "knn.json").read_text())["metrics"]
        assert knn["top1"] > 0.5
