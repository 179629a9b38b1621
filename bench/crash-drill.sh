#!/usr/bin/env bash
# The crash drill (issue #9): 8 clients submit 1,500 jobs, each retried with
# its own Idempotency-Key until the bridge answers with a SLURM id, while the
# bridge is SIGKILLed at 31 random moments and started again. Every job's
# name is then counted in squeue: lost and duplicated must both be 0.
#
#   sudo bash bench/crash-drill.sh [jobs=1500] [kills=31] [libslurm|sbatch|both]
#
# The last argument picks the submission path(s) drilled (default: both,
# one after the other, each with its own jobs and bridge database).
#
# ODYSSEY_DRILL_BRIDGE=/path/to/bridge drills another build (e.g. an older
# commit's, for a before/after comparison).
#
# The jobs sleep (held in SLURM, so finished ones cannot be forgotten before
# they are counted) and are cancelled at the end.
set -euo pipefail
# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

JOBS=${1:-1500}
KILLS=${2:-31}
PATHS=${3:-both}
[[ $PATHS == both ]] && PATHS="libslurm sbatch"
ensure_cargo
bash "$CLUSTER" up >/dev/null
cargo build --release -q -p bridge -p odyssey-bench --manifest-path "$REPO/Cargo.toml"
DATA=$ODYSSEY_STATE_DIR/drill-$$
PORT=18280
RUN=drill$$
USER_DIR=$SHARED_DIR/users/alice
cleanup() {
  scancel -u alice -n "$RUN" 2>/dev/null || true
  squeue -h -u alice -o '%i %j' | awk -v run="$RUN-" 'index($2, run) == 1 { print $1 }' | xargs -r scancel
  rm -rf "$DATA"
}
trap cleanup EXIT
# alice signs in with her Unix password (PAM): a fresh random one per run.
BENCH_UNIX_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
echo "alice:$BENCH_UNIX_PASSWORD" | chpasswd
export BENCH_UNIX_PASSWORD
for via in $PATHS; do
  step "the drill with submissions through $via"
  rm -rf "$DATA"
  "$REPO/target/release/odyssey-bench" drill --jobs "$JOBS" --kills "$KILLS" --clients 8 \
    --bridge "http://127.0.0.1:$PORT" --dir "$USER_DIR" --name "$RUN-$via" -- \
    "${ODYSSEY_DRILL_BRIDGE:-$REPO/target/release/bridge}" --listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$((PORT + 1))" \
    --data-dir "$DATA" --slurm-conf "$SLURM_CONF" --submit-rate 1000000 --slurm-probe-interval 0.5 --submit-via "$via"
done
