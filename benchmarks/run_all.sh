#!/usr/bin/env bash
# Run every benchmark of issue 6 and write a markdown summary.
#
#   benchmarks/run_all.sh                 # full sizes -> benchmarks/results.md (+ JSON and logs in benchmarks/results/)
#   benchmarks/run_all.sh --small         # seconds each -> $SSLBENCH_BENCH_CACHE/results-small.md (checks the scripts)
#   benchmarks/run_all.sh --threads 2     # any further flag goes to every script
#   ONLY="bench_knn bench_linear" benchmarks/run_all.sh   # a subset
#
# Run it alone on a quiet machine: a second busy process halves CPU throughput.
# lightly (for bench_simsiam_lightly) is optional: pip install --no-deps lightly
# Exit status: 1 if any benchmark failed a correctness check or crashed.
set -u
cd "$(dirname "$0")/.."

CACHE=${SSLBENCH_BENCH_CACHE:-/tmp/sslbench-bench}
small=0
for a in "$@"; do [ "$a" = "--small" ] && small=1; done
if [ "$small" = 1 ]; then
  OUT=${BENCH_OUT:-$CACHE/results-small}
  MD=${BENCH_MD:-$CACHE/results-small.md}
else
  OUT=${BENCH_OUT:-benchmarks/results}
  MD=${BENCH_MD:-benchmarks/results.md}
fi
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.log

ALL="bench_knn bench_linear bench_train_step bench_augment bench_suite bench_simsiam_lightly bench_flops bench_memory bench_knn_scale bench_startup bench_load"
status=0
for name in ${ONLY:-$ALL}; do
  extra=()
  [ "$name" = bench_memory ] && extra=(--quick-run vicreg)
  echo "=== $name $* ${extra[*]:-}"
  start=$(date +%s)
  python "benchmarks/$name.py" "$@" "${extra[@]}" --json "$OUT/$name.json" 2>&1 | tee "$OUT/$name.log"
  rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc after $(( $(date +%s) - start ))s"
  [ "$rc" = 0 ] || status=1
done

python benchmarks/summarize.py "$OUT" --out "$MD" --command "benchmarks/run_all.sh $*" || status=1
exit $status
