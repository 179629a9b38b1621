#!/usr/bin/env bash
# Workers joining and leaving (issue #11), on the local cluster: the time
# from a token to the node idle in sinfo (`cluster join`: a new namespace
# machine running `odyssey-worker join`) and the time `odyssey-worker leave`
# takes (drain, stop slurmd, delete the node, revoke), medians of ROUNDS;
# then WORKERS machines joined at once: all idle, none lost.
#
#   bash bench/workers.sh [rounds=10] [workers=10]
set -euo pipefail
# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

ROUNDS=${1:-10}
WORKERS=${2:-10}
bash "$CLUSTER" up >/dev/null
[[ -x $REPO/target/release/odyssey-worker ]] || fail "no odyssey-worker: run scripts/build.sh"
API=http://10.199.0.1:18280
DATA=$ODYSSEY_STATE_DIR/bench-workers-$$
"$REPO/target/release/bridge" --listen 10.199.0.1:18280 --metrics-listen 127.0.0.1:18281 --data-dir "$DATA" \
  --slurm-conf "$SLURM_CONF" --worker-listen 10.199.0.1:18282 \
  --munge-key-file "$ODYSSEY_STATE_DIR/munge/munge.key" \
  --argon2-memory-kib 256 --argon2-iterations 1 \
  >"$ODYSSEY_STATE_DIR/log/bench-workers-bridge.log" 2>&1 &
BRIDGE_PID=$!
cleanup() {
  local n
  for n in $(seq "$WORKERS") x; do bash "$CLUSTER" kill-worker "bw$n" >/dev/null 2>&1 || true; done
  for n in $(sinfo -h -N -o '%N %f' | awk '$2 ~ /worker/ && $1 ~ /^bw/ { print $1 }' | sort -u); do
    scontrol delete nodename="$n" 2>/dev/null || true
  done
  kill "$BRIDGE_PID" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT
for _ in $(seq 100); do curl -fs "$API/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
echo "bench-admin-password" | "$REPO/target/release/bridge" --data-dir "$DATA" --argon2-memory-kib 256 \
  --argon2-iterations 1 user add bench-admin --role admin >/dev/null
ADMIN=$(curl -fsS -X POST "$API/v1/auth/login" -H 'content-type: application/json' \
  -d '{"name": "bench-admin", "password": "bench-admin-password"}' | jq -r .access_token)
token() {
  curl -fsS -X POST "$API/v1/workers/tokens" -H "authorization: Bearer $ADMIN" \
    -H 'content-type: application/json' -d '{}' | jq -r .token
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.0f", m }'; }

joins=() leaves=()
for ((round = 1; round <= ROUNDS; round++)); do
  t=$(token)
  t0=$(now_ms)
  bash "$CLUSTER" join bwx --bridge "$API" --token "$t" >/dev/null 2>&1 || fail "join round $round failed"
  t1=$(now_ms)
  [[ $(sinfo -h -n bwx -o %T) == idle ]] || fail "bwx is not idle after join"
  bash "$CLUSTER" leave-worker bwx 30 >/dev/null 2>&1 || fail "leave round $round failed"
  t2=$(now_ms)
  [[ -z $(sinfo -h -n bwx -o %T 2>/dev/null) ]] || fail "bwx is still in sinfo after leaving"
  joins+=($((t1 - t0))) leaves+=($((t2 - t1)))
done

# WORKERS machines at once.
t0=$(now_ms)
pids=()
for n in $(seq "$WORKERS"); do
  t=$(token)
  bash "$CLUSTER" join "bw$n" --bridge "$API" --token "$t" >"$DATA/join-$n.log" 2>&1 &
  pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
t1=$(now_ms)
# The bridge sees a node at its next poll (every second).
for _ in $(seq 50); do
  curl -fsS "$API/v1/workers" -H "authorization: Bearer $ADMIN" \
    | jq -e '[.workers[] | select(.name | test("^bw[0-9]+$")) | select(.state != "idle")] | length == 0' >/dev/null && break
  sleep 0.2
done
idle=$(sinfo -h -N -o '%N %T' | awk '$1 ~ /^bw[0-9]+$/ && $2 == "idle"' | sort -u | wc -l)
states=$(curl -fsS "$API/v1/workers" -H "authorization: Bearer $ADMIN" | jq -r '[.workers[] | select(.name | test("^bw[0-9]+$")) | .state] | group_by(.) | map("\(.[0]) \(length)") | join(", ")')
lost=$(curl -fsS "$API/v1/workers" -H "authorization: Bearer $ADMIN" | jq '[.workers[] | select(.name | test("^bw[0-9]+$")) | select(.state == "lost")] | length')

echo "| what | result |"
echo "|---|---|"
echo "| join: token to idle in sinfo (\`cluster join\`), median of $ROUNDS | $(median "${joins[@]}") ms (min $(printf '%s\n' "${joins[@]}" | sort -n | head -1), max $(printf '%s\n' "${joins[@]}" | sort -n | tail -1)) |"
echo "| leave: \`odyssey-worker leave\` to gone from sinfo, median of $ROUNDS | $(median "${leaves[@]}") ms (min $(printf '%s\n' "${leaves[@]}" | sort -n | head -1), max $(printf '%s\n' "${leaves[@]}" | sort -n | tail -1)) |"
echo "| $WORKERS joined at once | all done in $((t1 - t0)) ms; $idle idle in sinfo; bridge says: $states; lost: $lost; failed joins: $failed |"
((failed == 0 && idle == WORKERS && lost == 0)) || fail "not every worker joined"
