#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine, as root: install, build, bring up
# the local cluster, start the bridge in front of it, and run an MPI job
# across every node as the test user alice, showing where each rank ran.
#
#   --once     stop the bridge after the demo instead of serving until Ctrl-C
#   --port N   the bridge's port on 127.0.0.1 (default 8080, env BRIDGE_PORT)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ONCE=0
PORT=${BRIDGE_PORT:-8080}
while (($#)); do
  case $1 in
    --once) ONCE=1; shift ;;
    --port) PORT=${2:?--port needs a number}; shift 2 ;;
    -h | --help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) fail "unknown argument '$1' (see --help)" ;;
  esac
done
if ! [[ $PORT =~ ^[0-9]+$ ]] || ((PORT < 1 || PORT > 65535)); then
  fail "--port must be 1-65535, not '$PORT'"
fi

step "installing packages"
bash "$CLUSTER" install
step "bringing the cluster up"
bash "$CLUSTER" up
bash "$REPO/scripts/build.sh"
N_NODES=$(sinfo -h -N -o '%N' | sort -u | wc -l)

step "starting the bridge on 127.0.0.1:$PORT"
PID_FILE=$ODYSSEY_STATE_DIR/run/bridge.pid
LOG_FILE=$ODYSSEY_STATE_DIR/log/bridge.log
# A bridge left by an earlier demo holds the port: stop it first.
if [[ -s $PID_FILE ]] && [[ $(cat "/proc/$(cat "$PID_FILE")/comm" 2>/dev/null) == bridge ]]; then
  kill "$(cat "$PID_FILE")" && sleep 0.5
fi
"$REPO/target/release/bridge" --listen "127.0.0.1:$PORT" --slurm-conf "$SLURM_CONF" >"$LOG_FILE" 2>&1 &
BRIDGE_PID=$!
echo "$BRIDGE_PID" >"$PID_FILE"
trap 'kill "$BRIDGE_PID" 2>/dev/null || true; rm -f "$PID_FILE"' EXIT

health=""
for _ in $(seq 100); do
  health=$(curl -fsS "http://127.0.0.1:$PORT/healthz" 2>/dev/null || true)
  [[ $health == *'"reachable":true'* ]] && break
  kill -0 "$BRIDGE_PID" 2>/dev/null || { cat "$LOG_FILE" >&2; fail "the bridge exited"; }
  sleep 0.1
done
echo "GET /healthz -> $health"
[[ $health == *'"reachable":true'* ]] || { cat "$LOG_FILE" >&2; fail "the bridge does not see SLURM"; }

step "running an MPI all-reduce as alice: $N_NODES nodes x 2 ranks, srun --mpi=pmix"
OUT_DIR=$SHARED_DIR/users/alice
JOB_ID=$(cd "$OUT_DIR" && runuser -u alice -- sbatch --parsable --job-name=odyssey-demo \
  -N "$N_NODES" --ntasks-per-node=2 --output="$OUT_DIR/demo-%j.out" \
  --wrap "srun --mpi=pmix $SHARED_DIR/bin/odyssey-mpi --output $OUT_DIR/demo-\$SLURM_JOB_ID.json allreduce --n 65536")
echo "submitted job $JOB_ID"
for _ in $(seq 600); do
  state=$(squeue -h -j "$JOB_ID" -o %T 2>/dev/null || true)
  [[ -z $state || $state == COMPLETED || $state == FAILED ]] && break
  sleep 0.1
done
cat "$OUT_DIR/demo-$JOB_ID.out"
grep -q VERIFIED "$OUT_DIR/demo-$JOB_ID.out" || fail "job $JOB_ID did not produce a verified result"
echo "JSON result: $OUT_DIR/demo-$JOB_ID.json"

if ((ONCE)); then
  step "demo done"
  exit 0
fi
step "the bridge serves http://127.0.0.1:$PORT/healthz (log: $LOG_FILE); Ctrl-C stops it"
echo "the cluster stays up: use it with  export SLURM_CONF=$SLURM_CONF ; stop it with  $CLUSTER down"
wait "$BRIDGE_PID"
