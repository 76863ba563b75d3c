"""Render the study's headline table (README and docs/study/README.md) from its written outputs.

    python studies/summary_table.py docs/study > docs/study/summary.md
    python studies/summary_table.py docs/results/quick --train-minutes   # adds pretraining minutes

Reads ``leaderboard.json`` (mean and 95% CI over seeds) and ``analysis.json`` (the
training-time monitor) from the given folder; prints markdown. Accuracies in %.
Rows keep the leaderboard's order (trained methods by Borda rank, then floors),
and the ``rank`` column says that rank (floors are ranked too).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

COLUMNS = [  # (leaderboard column, header, scale, decimals)
    ("knn.top1", "kNN k=20", 100, 2),
    ("linear.top1", "linear", 100, 2),
    ("few_shot.acc_5shot_centroid", "5-way 5-shot", 100, 2),
    ("few_shot_transfer.acc_5shot_centroid", "5-shot digits", 100, 2),
    ("low_shot.top1_10shot", "10-shot linear", 100, 2),
    ("collapse.z_rankme", "RankMe (proj.)", 1, 1),
    ("collapse.z_uniformity", "uniformity (proj.)", 1, 2),
    ("collapse.z_alpha_req", "alpha-ReQ (proj.)", 1, 2),
]


def _cell(row: dict, col: str, scale: float, decimals: int) -> str:
    v, ci = row.get(col), row.get(f"{col}_ci95")
    if not isinstance(v, int | float) or math.isnan(v):
        return ""
    text = f"{v * scale:.{decimals}f}"
    if isinstance(ci, int | float) and not math.isnan(ci):
        text += f" ± {ci * scale:.{decimals}f}"
    return text


def _monitor(analysis: dict, method: str) -> str:
    """``dimensional from epoch 1; complete from 3`` over seeds (epochs listed per seed), or ``healthy``."""
    runs = [r for r in analysis.get("collapse", []) if r["method"] == method]
    if not runs:
        return "-"
    if all(r["monitor_worst"] in ("healthy", "n/a") for r in runs):
        return "healthy"
    parts = []
    for status in ("dimensional", "complete"):
        epochs = []
        for r in runs:
            if status == r["monitor_worst"] and r.get("monitor_worst_epoch") is not None:
                epochs.append(str(int(r["monitor_worst_epoch"])))
            elif status == "dimensional" and r["monitor_worst"] == "complete" and r.get("monitor_onset_epoch") is not None:
                epochs.append(str(int(r["monitor_onset_epoch"])))
            else:
                epochs.append("-")
        if any(e != "-" for e in epochs):
            parts.append(f"{status} from epoch {'/'.join(epochs)}")
    return "; ".join(parts)


def render(folder: Path, train_minutes: bool = False) -> str:
    """The markdown table of ``folder``'s leaderboard and analysis (with a column of
    pretraining minutes, the mean over seeds, when ``train_minutes``)."""
    board = json.loads((folder / "leaderboard.json").read_text())
    analysis = json.loads((folder / "analysis.json").read_text()) if (folder / "analysis.json").exists() else {}
    head = ["method", "rank", "seeds", *(h for _, h, _, _ in COLUMNS), "status (final)", "monitor", "training"]
    head += ["train min"] if train_minutes else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in board["rows"]:
        floor = bool(row.get("floor", row.get("reference", False)))  # leaderboard.json 3 says floor, 2 reference
        name = row["method"] + (" (floor)" if floor else "")
        cells = [name, str(row.get("rank", "")), str(row["n_seeds"]), *(_cell(row, c, s, d) for c, _, s, d in COLUMNS)]
        cells += [str(row.get("collapse.status", "")), _monitor(analysis, row["method"]),
                  "-" if floor else str(row.get("train.status", ""))]
        if train_minutes:
            cells.append("-" if floor else f"{row.get('train.minutes', float('nan')):.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--train-minutes"]
    print(render(Path(args[0] if args else "docs/study"), "--train-minutes" in sys.argv[1:]), end="")
