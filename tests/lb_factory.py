"""Tiny hand-made result records and run directories for the leaderboard, compare and report tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROTOCOLS: dict[str, dict[str, Any]] = {
    "knn": {"directions": {"top1": "higher", "top1_k1": "higher"}, "main": "top1", "params": {"k": 20, "temperature": 0.07}},
    "linear": {"directions": {"top1": "higher"}, "main": "top1", "params": {"val_fraction": 0.2}},
    "collapse": {"directions": {"rankme": "higher", "z_rankme": "higher", "status_code": "lower"}, "main": "rankme",
                 "params": {"max_samples": 10000}},
    "err": {"directions": {"error": "lower"}, "main": "error", "params": {}},
}
FLOORS = ("random_init", "raw_pixels")


def make_result(method: str, seed: int, protocol: str, metrics: dict[str, Any], *, status: str | None = None,
                version: str = "1", fingerprint: str = "f" * 64) -> dict[str, Any]:
    """A schema-1 result record as ``sslbench run`` writes it (only the fields readers use)."""
    p = PROTOCOLS[protocol]
    kind = method if method in FLOORS else "trained"
    return {
        "schema_version": 1,
        "method": method,
        "encoder_kind": kind,
        "seed": seed,
        "dataset": {"name": "digits", "fingerprint": fingerprint},
        "train": {"status": status or ("not_trained" if kind != "trained" else "finished")},
        "protocol": {"name": protocol, "version": version, "params": p["params"], "main_metric": p["main"],
                     "directions": p["directions"]},
        "metrics": metrics,
        "timings": {"train_s": 60.0},
    }


def write_results(out: Path, results: list[dict[str, Any]]) -> Path:
    """Lay result records out as a run directory: ``<out>/<method>/seed<k>/results/<protocol>.json``."""
    for r in results:
        path = out / r["method"] / f"seed{r['seed']}" / "results" / f"{r['protocol']['name']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(r))
    return out


def sweep(scores: dict[str, dict[int, dict[str, float]]], collapse_status: dict[str, str] | None = None,
          train_status: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Records of knn/linear/collapse for ``{method: {seed: {"knn": top1, "linear": top1, "rankme": r}}}``."""
    out = []
    for m, by_seed in scores.items():
        for seed, s in by_seed.items():
            status = (train_status or {}).get(m)
            out.append(make_result(m, seed, "knn", {"top1": s["knn"], "top1_k1": s["knn"] - 0.01}, status=status))
            out.append(make_result(m, seed, "linear", {"top1": s["linear"]}, status=status))
            label = (collapse_status or {}).get(m, "n/a" if m in FLOORS else "healthy")
            col = {"rankme": s["rankme"], "status": label}
            if m not in FLOORS:
                col.update(z_rankme=2 * s["rankme"], status_code={"healthy": 0.0, "dimensional": 1.0, "complete": 2.0}[label])
            out.append(make_result(m, seed, "collapse", col, status=status))
    return out


BASE_SCORES = {
    "vicreg": {0: {"knn": 0.80, "linear": 0.85, "rankme": 40.0}, 1: {"knn": 0.82, "linear": 0.86, "rankme": 42.0}},
    "simsiam": {0: {"knn": 0.78, "linear": 0.84, "rankme": 30.0}, 1: {"knn": 0.79, "linear": 0.83, "rankme": 31.0}},
    "random_init": {0: {"knn": 0.70, "linear": 0.80, "rankme": 10.0}},
    "raw_pixels": {0: {"knn": 0.90, "linear": 0.88, "rankme": 35.0}},
}
