#!/usr/bin/env bash
# Run the loss-variant study (resumes if interrupted) and regenerate everything under docs/study/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=runs/loss_variants
DOCS=docs/study
sslbench run --config studies/loss_variants.toml
mkdir -p "$DOCS"
sslbench leaderboard "$OUT" --write "$DOCS" > /dev/null
sslbench report "$OUT" --out "$DOCS/report.html"
sslbench analyze "$OUT" --write "$DOCS" > /dev/null
python studies/summary_table.py "$DOCS" > "$DOCS/summary.md"
echo "wrote $DOCS/leaderboard.{md,csv,json,html}, $DOCS/report.html, $DOCS/analysis.{md,json}, $DOCS/summary.md"
