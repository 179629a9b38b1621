#!/usr/bin/env bash
# Launch cost of the health-report plugin (issues #4, #11): `srun -N3 -n3
# true` with the plugin absent from plugstack.conf, present but off, and on,
# on the configured nodes c1..c3 (delivery: each node's agent,
# odyssey-health-flush --watch, with the cluster secret) and on three joined
# workers (delivery: the worker agent, over mutual TLS), interleaved round
# by round so every case shares the machine's state. Also: bytes spooled
# per task and the plugin's size.
#
#   bash bench/spank-launch.sh [rounds=30]
set -euo pipefail
# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
# shellcheck source=stats.sh
source "$(dirname "${BASH_SOURCE[0]}")/stats.sh"

ROUNDS=${1:-30}
bash "$CLUSTER" up >/dev/null
PLUGIN=$ODYSSEY_STATE_DIR/lib/odyssey_spank.so
CONF=$ODYSSEY_STATE_DIR/etc/plugstack.conf.d/odyssey-health.conf
# A run stopped during an "absent" case left the line aside.
if [[ -f $CONF.absent && ! -f $CONF ]]; then mv "$CONF.absent" "$CONF"; fi
[[ -f $PLUGIN && -f $CONF ]] || fail "no plugin installed: run scripts/build.sh"
[[ -x $REPO/target/release/odyssey-worker ]] || fail "no odyssey-worker: run scripts/build.sh"
# "Absent": the plugin's plugstack.conf line moved out of the include's
# reach (`*.conf`) for that case's launches, and back. The .so stays on
# disk unused and the nodes' agents keep running, idle (a directory read
# every 500 ms).
# A bridge where plugstack.conf sends the reports, so "on" includes
# delivery, with a worker endpoint for the workers.
DATA=$ODYSSEY_STATE_DIR/bench-health-$$
API=http://10.199.0.1:8080
"$REPO/target/release/bridge" --listen 10.199.0.1:8080 --metrics-listen 127.0.0.1:18191 --data-dir "$DATA" \
  --slurm-conf "$SLURM_CONF" --health-secret-file "$ODYSSEY_STATE_DIR/etc/health.secret" \
  --worker-listen 10.199.0.1:18192 --munge-key-file "$ODYSSEY_STATE_DIR/munge/munge.key" \
  --argon2-memory-kib 256 --argon2-iterations 1 \
  >"$ODYSSEY_STATE_DIR/log/bench-health-bridge.log" 2>&1 &
BRIDGE_PID=$!
WORKERS=(sw1 sw2 sw3)
cleanup() {
  local w
  for w in "${WORKERS[@]}"; do
    bash "$CLUSTER" kill-worker "$w" >/dev/null 2>&1 || true
    scontrol delete nodename="$w" 2>/dev/null || true
  done
  kill "$BRIDGE_PID" 2>/dev/null || true
  if [[ -f $CONF.absent ]]; then mv -f "$CONF.absent" "$CONF"; fi
  rm -rf "$DATA"
}
trap cleanup EXIT
for _ in $(seq 100); do curl -fs "$API/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
echo "bench-admin-password" | "$REPO/target/release/bridge" --data-dir "$DATA" --argon2-memory-kib 256 \
  --argon2-iterations 1 user add bench-admin --role admin >/dev/null
ADMIN=$(curl -fsS -X POST "$API/v1/auth/login" -H 'content-type: application/json' \
  -d '{"name": "bench-admin", "password": "bench-admin-password"}' | jq -r .access_token)
for w in "${WORKERS[@]}"; do
  # Records an earlier run's workers of the same name left behind: jobs of
  # another bridge, which this one cannot place on the new worker.
  rm -rf "$ODYSSEY_STATE_DIR/nodes/$w/health-spool"
  token=$(curl -fsS -X POST "$API/v1/workers/tokens" -H "authorization: Bearer $ADMIN" \
    -H 'content-type: application/json' -d '{}' | jq -r .token)
  bash "$CLUSTER" join "$w" --bridge "$API" --token "$token" >"$DATA/join-$w.log" 2>&1 || fail "worker $w did not join: $(tail -n 3 "$DATA/join-$w.log")"
done
cd "$SHARED_DIR/scratch"
STARTED=$(date +%s)
# One line per launch that failed (its time still counts: a bench that
# hid failures would flatter the case they hit).
FAILED=$DATA/failed-launches
: >"$FAILED"
# CPU time (user + system, in clock ticks) of the processes that deliver:
# the bench's bridge, the node agents, the worker agents.
cpu_ticks() { # pids...
  local pid total=0
  for pid in "$@"; do
    [[ -r /proc/$pid/stat ]] && total=$((total + $(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat")))
  done
  echo "$total"
}
node_agents() { pgrep -f -- "--watch --lock $ODYSSEY_STATE_DIR/run/health-agent-" || true; }
worker_agents() { local w; for w in "${WORKERS[@]}"; do cat "$ODYSSEY_STATE_DIR/workers/$w/agent.pid" 2>/dev/null; done; }
mapfile -t NODE_AGENTS < <(node_agents)
mapfile -t WORKER_AGENTS < <(worker_agents)
CPU0=("$(cpu_ticks "$BRIDGE_PID")" "$(cpu_ticks "${NODE_AGENTS[@]}")" "$(cpu_ticks "${WORKER_AGENTS[@]}")")

now_ns() { date +%s%N; }
time_srun() { # kind args...: microseconds of one srun
  local t0 t1 where
  case $1 in
    nodes) where=(-w "c[1-3]") ;;
    workers) where=(-w "sw[1-3]") ;;
  esac
  shift
  t0=$(now_ns)
  srun -N3 -n3 "${where[@]}" "$@" true >/dev/null 2>&1 || echo x >>"$FAILED"
  t1=$(now_ns)
  echo $(((t1 - t0) / 1000))
}
declare -A times
# Each round runs the three cases in one of the six orders, in turn, so no
# case always follows another (a step's cleanup can slow the next launch);
# both kinds of node get each case, in alternating order.
ORDERS=("absent off on" "absent on off" "off absent on" "off on absent" "on absent off" "on off absent")
for ((round = 1; round <= ROUNDS; round++)); do
  kinds="nodes workers"
  ((round % 2)) && kinds="workers nodes"
  for case in ${ORDERS[round % 6]}; do
    [[ $case == absent ]] && mv "$CONF" "$CONF.absent"
    for kind in $kinds; do
      case $case in
        absent | off) t=$(time_srun "$kind") ;;
        on) t=$(time_srun "$kind" --health-report=summary) ;;
      esac
      times[$kind.$case]+="$t "
    done
    [[ $case == absent ]] && mv "$CONF.absent" "$CONF"
  done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.1f", m / 1000 }'; }
# Per round: this case's time over the same round's "absent" on the same
# kind of node, minus one, in per cent: median and 95 % interval.
paired() { # case-times absent-times
  paired_ratio "$1" "$2" | awk '{ printf "%+.1f %% [%+.1f, %+.1f]", ($1 - 1) * 100, ($2 - 1) * 100, ($3 - 1) * 100 }'
}
cell() { # kind case
  local m base
  m=$(median "${times[$1.$2]}")
  base=$(median "${times[$1.absent]}")
  if [[ $2 == absent ]]; then
    echo "$m ms"
  else
    echo "$(awk -v m="$m" -v b="$base" 'BEGIN { printf "%.1f ms (%+.1f %%)", m, (m / b - 1) * 100 }'); per round $(paired "${times[$1.$2]}" "${times[$1.absent]}")"
  fi
}
# Every launch time, for a later look: round, kind, case, microseconds.
RAW=$ODYSSEY_STATE_DIR/log/spank-launch-$(date +%Y%m%dT%H%M%S).tsv
for key in "${!times[@]}"; do
  tr ' ' '\n' <<<"${times[$key]}" | grep . | awk -v k="${key%%.*}" -v c="${key#*.}" '{ print NR "\t" k "\t" c "\t" $1 }'
done | sort -n >"$RAW"

# Bytes per task: the spool files of one 3-task step.
name=bench-spool-$$
srun -N3 -n3 -w "c[1-3]" --job-name="$name" --health-report=summary true >/dev/null 2>&1
job=$(squeue -h -t all -n "$name" -o %i)
mapfile -t files < <(find "$ODYSSEY_STATE_DIR"/nodes/c*/health-spool -name "$job.0.jsonl")
bytes=$(cat "${files[@]}" | wc -c)
task_bytes=$(cat "${files[@]}" | grep '"kind":"task"' | wc -c)

echo "| case | median of $ROUNDS \`srun -N3 -n3 true\`: configured nodes (node agent, secret) | joined workers (agent, mutual TLS) |"
echo "|---|---|---|"
echo "| plugin absent | $(cell nodes absent) | $(cell workers absent) |"
echo "| plugin present, option off | $(cell nodes off) | $(cell workers off) |"
echo "| plugin on (--health-report=summary) | $(cell nodes on) | $(cell workers on) |"
echo
# "On" includes delivery only if the records arrived: wait (bounded) until
# every node's spool is empty, then count this run's records per kind
# (three tasks and three nodes per step; one more step on c1..c3 above).
pending() { find "$ODYSSEY_STATE_DIR"/nodes/{c1,c2,c3,sw1,sw2,sw3}/health-spool -maxdepth 1 -name '*.jsonl' 2>/dev/null | wc -l; }
for _ in $(seq 150); do (($(pending) == 0)) && break; sleep 0.2; done
stored() { sqlite3 "$DATA/bridge.db" "SELECT COUNT(*) FROM health_records WHERE node LIKE '$1' AND at >= $STARTED"; }
CPU1=("$(cpu_ticks "$BRIDGE_PID")" "$(cpu_ticks "${NODE_AGENTS[@]}")" "$(cpu_ticks "${WORKER_AGENTS[@]}")")
ms_per_step() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v n="$2" 'BEGIN { printf "%.2f ms", t * 1000 / hz / n }'; }
echo "delivery's CPU per reporting step (user + system): the bridge $(ms_per_step $((CPU1[0] - CPU0[0])) $((2 * ROUNDS))), node agents $(ms_per_step $((CPU1[1] - CPU0[1])) "$ROUNDS"), worker agents $(ms_per_step $((CPU1[2] - CPU0[2])) "$ROUNDS")"
echo "failed launches: $(wc -l <"$FAILED")"
echo "records stored: configured nodes $(stored 'c%') of $((ROUNDS * 6 + 6)), workers $(stored 'sw%') of $((ROUNDS * 6)); spool files still pending: $(pending)"
echo "every launch time: $RAW"
echo "spooled for one 3-task step: $bytes bytes ($((task_bytes / 3)) bytes per task record); plugin size $(stat -c %s "$PLUGIN") bytes"
