#!/usr/bin/env bash
# Launch cost of the health-report plugin (issue #4): `srun -N3 -n3 true`
# with the plugin absent from plugstack.conf, present but off, and on,
# interleaved round by round so the three share the machine's state.
# Also: bytes spooled per task and the plugin's size.
#
#   bash bench/spank-launch.sh [rounds=30]
set -euo pipefail
# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

ROUNDS=${1:-30}
bash "$CLUSTER" up >/dev/null
PLUGIN=$ODYSSEY_STATE_DIR/lib/odyssey_spank.so
[[ -f $PLUGIN ]] || fail "no plugin installed: run scripts/build.sh"
# The installed plugin and its flush program, reinstalled after each "absent".
KEEP_DIR=$(mktemp -d)
KEEP=$KEEP_DIR/libodyssey_spank.so
cp "$PLUGIN" "$KEEP"
[[ -x $ODYSSEY_STATE_DIR/lib/odyssey-health-flush ]] && cp "$ODYSSEY_STATE_DIR/lib/odyssey-health-flush" "$KEEP_DIR/"
# A bridge where plugstack.conf sends the reports, so "on" includes delivery.
DATA=$ODYSSEY_STATE_DIR/bench-health-$$
"$REPO/target/release/bridge" --listen 10.199.0.1:8080 --metrics-listen 127.0.0.1:18191 --data-dir "$DATA" \
  --slurm-conf "$SLURM_CONF" --health-secret-file "$ODYSSEY_STATE_DIR/etc/health.secret" \
  >"$ODYSSEY_STATE_DIR/log/bench-health-bridge.log" 2>&1 &
BRIDGE_PID=$!
trap 'kill $BRIDGE_PID 2>/dev/null; bash "$CLUSTER" plugin install "$KEEP" >/dev/null 2>&1; rm -rf "$KEEP_DIR" "$DATA"' EXIT
for _ in $(seq 100); do curl -fs http://10.199.0.1:8080/healthz >/dev/null 2>&1 && break; sleep 0.1; done
cd "$SHARED_DIR/scratch"

now_ns() { date +%s%N; }
time_srun() { # args...: milliseconds of one srun
  local t0 t1
  t0=$(now_ns)
  srun -N3 -n3 "$@" true >/dev/null 2>&1
  t1=$(now_ns)
  echo $(((t1 - t0) / 1000))
}
absent=() off=() on=()
# Each round runs the three cases in one of the six orders, in turn, so no
# case always follows another (a step's cleanup can slow the next launch).
ORDERS=("absent off on" "absent on off" "off absent on" "off on absent" "on absent off" "on off absent")
for ((round = 1; round <= ROUNDS; round++)); do
  for case in ${ORDERS[round % 6]}; do
    case $case in
      absent)
        bash "$CLUSTER" plugin remove >/dev/null 2>&1
        absent+=("$(time_srun)")
        bash "$CLUSTER" plugin install "$KEEP" >/dev/null 2>&1
        ;;
      off) off+=("$(time_srun)") ;;
      on) on+=("$(time_srun --health-report=summary)") ;;
    esac
  done
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.1f", m / 1000 }'; }

# Bytes per task: the spool files of one 3-task step.
name=bench-spool-$$
srun -N3 -n3 --job-name="$name" --health-report=summary true >/dev/null 2>&1
job=$(squeue -h -t all -n "$name" -o %i)
mapfile -t files < <(find "$ODYSSEY_STATE_DIR"/nodes/*/health-spool -name "$job.0.jsonl")
bytes=$(cat "${files[@]}" | wc -c)
task_bytes=$(cat "${files[@]}" | grep '"kind":"task"' | wc -c)

echo "| case | median of $ROUNDS \`srun -N3 -n3 true\` |"
echo "|---|---|"
echo "| plugin absent | $(median "${absent[@]}") ms |"
echo "| plugin present, option off | $(median "${off[@]}") ms |"
echo "| plugin on (--health-report=summary) | $(median "${on[@]}") ms |"
echo
echo "records the bridge took: $(curl -fs http://127.0.0.1:18191/metrics | awk '/^bridge_health_reports_total\{outcome="accepted"\}/ { print $2 }')"
echo "spooled for one 3-task step: $bytes bytes ($((task_bytes / 3)) bytes per task record); plugin size $(stat -c %s "$KEEP") bytes"
