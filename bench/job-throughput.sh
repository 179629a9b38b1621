#!/usr/bin/env bash
# How fast the cluster starts and finishes trivial batch jobs: submit N
# held `true` jobs as alice, release them all with one scontrol, and time
# until none is pending, running or completing. Submission is outside the
# timing: this measures slurmctld's scheduling, not sbatch.
#
#   sudo bash bench/job-throughput.sh [jobs=600] [runs=3]
#
# Prints one Markdown table row: jobs, runs, median jobs/s, min, max.
set -euo pipefail
# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

JOBS=${1:-600}
RUNS=${2:-3}
USER_NAME=alice
bash "$CLUSTER" up >/dev/null

active() {
  squeue -h -u "$USER_NAME" -t PENDING,RUNNING,COMPLETING,CONFIGURING,SUSPENDED -o %i | wc -l
}
# Leftovers of an earlier run (or of anything else alice ran) would be counted.
scancel -u "$USER_NAME" 2>/dev/null || true
deadline=$((SECONDS + 120))
while (($(active) > 0)); do
  ((SECONDS < deadline)) || fail "alice's earlier jobs did not leave the queue within 120 s"
  sleep 0.2
done

rates=()
now_ms() { date +%s%3N; }
for ((run = 1; run <= RUNS; run++)); do
  ids=()
  for ((i = 0; i < JOBS; i++)); do
    ids+=("$(runuser -u "$USER_NAME" -- env SLURM_CONF="$SLURM_CONF" \
      sbatch --parsable --hold -o /dev/null -e /dev/null -D /tmp -J tput --wrap true)")
  done
  t0=$(now_ms)
  # One release for every job: scontrol takes a comma-separated list.
  scontrol release "$(IFS=,; echo "${ids[*]}")"
  deadline=$((SECONDS + 1800))
  while (($(active) > 0)); do
    ((SECONDS < deadline)) || fail "$JOBS jobs did not drain within 1800 s"
    sleep 0.1
  done
  t1=$(now_ms)
  rates+=("$(awk -v n="$JOBS" -v ms=$((t1 - t0)) 'BEGIN { printf "%.1f", n * 1000 / ms }')")
  echo "run $run: $JOBS jobs in $((t1 - t0)) ms (${rates[-1]} jobs/s)" >&2
done

printf '%s\n' "${rates[@]}" | sort -n | awk -v n="$JOBS" -v r="$RUNS" '{ v[NR] = $1 } END {
  m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
  print "| jobs | runs | median jobs/s | min | max |"
  print "|---|---|---|---|---|"
  printf "| %d | %d | %.1f | %.1f | %.1f |\n", n, r, m, v[1], v[NR] }'
