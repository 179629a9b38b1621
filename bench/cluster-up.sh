#!/usr/bin/env bash
# Time `slurm-conf/cluster up` from a stopped cluster (packages installed,
# namespaces and daemons gone) to every node idle, and a second `up` on a
# healthy cluster. Prints one Markdown table row per case: median, min, max.
#
#   sudo bash bench/cluster-up.sh [runs=7] [nodes=3]
set -euo pipefail
# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

RUNS=${1:-7}
NODES=${2:-3}
cold=() warm=()
now_ms() { date +%s%3N; }
for ((run = 1; run <= RUNS; run++)); do
  bash "$CLUSTER" down --nodes "$NODES" 2>/dev/null
  t0=$(now_ms)
  bash "$CLUSTER" up --nodes "$NODES" 2>/dev/null
  t1=$(now_ms)
  bash "$CLUSTER" up --nodes "$NODES" 2>/dev/null
  t2=$(now_ms)
  cold+=($((t1 - t0))) warm+=($((t2 - t1)))
  echo "run $run: cold ${cold[-1]} ms, warm ${warm[-1]} ms" >&2
done

stats() { # median min max of the arguments, in seconds
  printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.2f s | %.2f s | %.2f s", m / 1000, v[1] / 1000, v[NR] / 1000 }'
}
echo "| case | nodes | runs | median | min | max |"
echo "|---|---|---|---|---|---|"
echo "| down -> up, every node idle | $NODES | $RUNS | $(stats "${cold[@]}") |"
echo "| up on a healthy cluster | $NODES | $RUNS | $(stats "${warm[@]}") |"
