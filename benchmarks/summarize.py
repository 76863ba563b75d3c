"""Collect the JSON reports of the benchmarks into one markdown summary.

    python benchmarks/summarize.py benchmarks/results --out benchmarks/results.md --command "benchmarks/run_all.sh"
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

ORDER = ["a_knn", "b_linear", "c_train_step", "d_augment", "e_suite", "f_simsiam_lightly", "g_flops", "memory_eval",
         "knn_scale"]


def fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:
            return "nan"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 100:
            return f"{v:.1f}"
        return f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}"
    if isinstance(v, list):
        return ", ".join(fmt(x) for x in v)
    return str(v).replace("|", "\\|")


def table(rows: list[dict]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return out


def headline(doc: dict) -> str:
    if doc["ratios"]:
        r = doc["ratios"][0]
        return f"{r['name']}: {r['value']:.3g}x"
    return "-"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path, help="folder of <benchmark>.json reports")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--command", default="benchmarks/run_all.sh")
    args = p.parse_args()
    docs = {}
    for f in sorted(args.results.glob("*.json")):
        d = json.loads(f.read_text())
        docs[d["key"]] = d
    keys = [k for k in ORDER if k in docs] + sorted(k for k in docs if k not in ORDER)
    if not keys:
        print(f"no reports in {args.results}", file=sys.stderr)
        return 1
    small = any(docs[k]["small"] for k in keys)
    m = docs[keys[0]]["machine"]
    lines = [
        "# sslbench benchmarks",
        "",
        f"Written by `benchmarks/summarize.py` on {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} from `{args.command}`.",
        "",
    ]
    if small:
        lines += ["**SMALL sizes (`--small`): these numbers only show that the scripts work; do not quote them.**", ""]
    lines += [
        f"Machine: {m.get('cpu', '?')}, {m.get('cpu_count')} logical CPUs, {m.get('torch_threads')} torch threads, "
        f"load average at the end of the first benchmark {m.get('load_avg_1m')}; python {m.get('python')}, "
        f"torch {m.get('torch')}, torchvision {m.get('torchvision', '?')}, faiss {m.get('faiss', '?')}, "
        f"scikit-learn {m.get('sklearn', '?')}, numpy {m.get('numpy')}.",
        "",
        "Ratios compare contenders measured in the same process, interleaved. A *check* is a correctness "
        "condition (a failure makes the script exit 1); a *target* is issue 6's performance goal.",
        "",
        "| benchmark | headline | checks | targets |",
        "|---|---|---|---|",
    ]
    for k in keys:
        d = docs[k]
        checks = d["checks"]
        n_ok = sum(c["passed"] for c in checks)
        targets = "; ".join(f"{'MET' if t['met'] else 'MISSED'}: {t['name']} ({t['detail']})" for t in d["targets"]) or "-"
        verdict = f"{n_ok}/{len(checks)} passed" if checks else "-"
        lines.append(f"| {k}: {fmt(d['title'])} | {fmt(headline(d))} | {verdict} | {fmt(targets)} |")
    for k in keys:
        d = docs[k]
        lines += ["", f"## {k}: {d['title']}", ""]
        lines += [f"Command: `{' '.join(d['argv'])}`", ""]
        lines += ["Parameters: " + ", ".join(f"{p_}={fmt(v)}" for p_, v in d["params"].items()), ""]
        if d["rows"]:
            lines += table(d["rows"]) + [""]
        for r in d["ratios"]:
            lines.append(f"- ratio **{r['name']}: {r['value']:.3g}x** {r['detail']}")
        for c in d["checks"]:
            lines.append(f"- check {'PASS' if c['passed'] else '**FAIL**'}: {c['name']} {c['detail']}")
        for t in d["targets"]:
            lines.append(f"- target {'MET' if t['met'] else '**MISSED**'}: {t['name']} ({t['detail']})")
        for n in d["notes"]:
            lines.append(f"- note: {n}")
        lines.append(f"- peak RSS of the benchmark process: {d['peak_rss_mb']:.0f} MiB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
