#!/usr/bin/env bash
# The `quick` table (docs/results/quick/README.md): every method and built-in variant at the default preset, seed 0,
# plus the floors, then the leaderboard, the monitor analysis and the table in docs/results/quick/.
# About 70 min on 2 CPU cores (4-6.5 min per method, plus evaluation); resumable.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=runs/quick
DOCS=docs/results/quick
sslbench run --out "$OUT" --methods byol,simclr,simsiam,vicreg_mod,barlow_twins,vicreg,vicreg_novar,vicreg_nocov,simsiam_nosg,byol_noema,barlow_twins_lambda05
mkdir -p "$DOCS"
sslbench leaderboard "$OUT" --write "$DOCS" > /dev/null
sslbench analyze "$OUT" --write "$DOCS" > /dev/null
python studies/summary_table.py "$DOCS" --train-minutes > "$DOCS/summary.md"
echo "wrote $DOCS/leaderboard.{md,csv,json,html}, $DOCS/analysis.{md,json}, $DOCS/summary.md"
