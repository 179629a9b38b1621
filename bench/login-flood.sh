#!/usr/bin/env bash
# Login flood (issue #8): N wrong-password logins from C concurrent clients
# against a bridge with production argon2id cost (19 MiB, t=2), then the
# bridge's peak and final resident memory, /readyz latency during the flood,
# and whether a legitimate login from another address (127.0.0.2) got in.
#
#   bash bench/login-flood.sh [BRIDGE_BINARY...]
#
# Each binary given (default: target/release/bridge) is measured in turn
# with the same flood, e.g. a build of the commit before the fix beside the
# current one. The per-address and per-name rate limits are raised so the
# flood reaches the password checks (with the defaults, all but the first
# attempts get 429). A binary with per-address check slots is measured
# twice: with its default slots, and with them raised too, so the flood
# meets the credential pool's bound alone.
set -euo pipefail
# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

N=${FLOOD_REQUESTS:-2000}
C=${FLOOD_CLIENTS:-200}
PORT=${FLOOD_PORT:-18931}
mapfile -t BINARIES < <(if (($#)); then printf '%s\n' "$@"; else echo "$REPO/target/release/bridge"; fi)
WORK=$(mktemp -d /tmp/login-flood.XXXXXX)
trap 'kill "${PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
API=http://127.0.0.1:$PORT

# One curl config with N requests, run with --parallel-max C.
for _ in $(seq "$N"); do
  printf 'url = "%s/v1/auth/login"\nheader = "content-type: application/json"\n' "$API"
  printf 'data = "{\\"name\\": \\"victim\\", \\"password\\": \\"wrong-password-guess\\"}"\n'
  printf 'output = "/dev/null"\nwrite-out = "%%{http_code}\\n"\nnext\n'
done | head -n -1 >"$WORK/flood.curl"

kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$PID/status" 2>/dev/null || echo 0; }

printf '| bridge | requests | 401 | 429 | 503 | other | flood s | RSS before MB | peak RSS MB | RSS after MB | /readyz max ms | other address login |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|\n'
# measure LABEL BINARY [EXTRA ARGS...]: one flood against one bridge.
measure() {
  local label=$1 binary=$2
  shift 2
  local extra=("$@") data=$WORK/data-$RANDOM
  # Address space capped (FLOOD_CAP_GIB, 16), so a bridge that grows
  # without bound dies alone instead of bringing the kernel's OOM killer
  # down on the machine's other daemons (slurmctld among them).
  (ulimit -v $((${FLOOD_CAP_GIB:-16} * 1024 * 1024)) && exec "$binary" --listen "127.0.0.1:$PORT" \
    --metrics-listen "127.0.0.1:$((PORT + 1))" --data-dir "$data" --slurm-conf "$SLURM_CONF" "${extra[@]}") \
    >"$WORK/bridge.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do curl -fsS "$API/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "$API/readyz" >/dev/null 2>&1 || { cat "$WORK/bridge.log" >&2; fail "$label did not start"; }
  body='{"name": "victim", "password": "the-right-password"}'
  curl -fsS -X POST "$API/v1/auth/register" -H 'content-type: application/json' -d "$body" >/dev/null
  curl -fsS -X POST "$API/v1/auth/register" -H 'content-type: application/json' \
    -d '{"name": "bystander", "password": "bystander-password"}' >/dev/null
  before=$(kib VmRSS)
  # /readyz probed every 50 ms while the flood runs (max latency kept), and
  # the resident size sampled alike (the peak survives an OOM kill).
  (while kill -0 "$PID" 2>/dev/null && [[ ! -f $WORK/done ]]; do
    curl -s -o /dev/null -w '%{time_total}\n' --max-time 30 "$API/readyz" || true
    sleep 0.05
  done) >"$WORK/readyz.txt" &
  PROBE=$!
  (while kill -0 "$PID" 2>/dev/null && [[ ! -f $WORK/done ]]; do
    kib VmRSS
    sleep 0.05
  done) >"$WORK/rss.txt" &
  SAMPLER=$!
  started=$(date +%s.%N)
  curl -s --no-progress-meter --parallel --parallel-immediate --parallel-max "$C" --config "$WORK/flood.curl" >"$WORK/codes.txt" &
  FLOOD=$!
  sleep 1
  # A legitimate user from another address, mid-flood.
  legit=$(curl -s -o /dev/null -w '%{http_code}' --max-time 60 --interface 127.0.0.2 \
    -X POST "http://127.0.0.1:$PORT/v1/auth/login" -H 'content-type: application/json' \
    -d '{"name": "bystander", "password": "bystander-password"}' || echo fail)
  wait "$FLOOD" || true
  elapsed=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')
  touch "$WORK/done"
  wait "$PROBE" "$SAMPLER"
  rm -f "$WORK/done"
  sleep 2
  peak=$(sort -n "$WORK/rss.txt" | tail -1)
  if kill -0 "$PID" 2>/dev/null; then
    peak=$(kib VmHWM)
    after="$(($(kib VmRSS) / 1024))"
  else
    wait "$PID" 2>/dev/null && code=0 || code=$?
    after="died (exit $code$( ((code > 128)) && echo ", signal $((code - 128))"))"
  fi
  count() { grep -c "^$1\$" "$WORK/codes.txt" || true; }
  other=$(grep -vcE '^(401|429|503)$' "$WORK/codes.txt" || true)
  readyz_max=$(sort -n "$WORK/readyz.txt" | tail -1)
  printf '| %s | %d | %d | %d | %d | %d | %.1f | %d | %d | %s | %.0f | %s |\n' \
    "$label" "$N" \
    "$(count 401)" "$(count 429)" "$(count 503)" "$other" "$elapsed" \
    $((before / 1024)) $((${peak:-0} / 1024)) "$after" "$(awk -v s="${readyz_max:-0}" 'BEGIN {print s * 1000}')" "$legit"
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
}

for binary in "${BINARIES[@]}"; do
  name="$(basename "$(dirname "$(dirname "$binary")")")/$(basename "$binary")"
  if ! "$binary" --help | grep -q -- --login-rate-per-address; then
    measure "$name" "$binary"
    continue
  fi
  rates=(--login-rate-per-address 1000000 --login-rate-per-name 1000000)
  measure "$name (default check slots per address)" "$binary" "${rates[@]}"
  measure "$name (slots per address raised)" "$binary" "${rates[@]}" --credential-slots-per-address 65536
done
