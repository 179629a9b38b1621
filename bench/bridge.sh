#!/usr/bin/env bash
# The bridge against raw sbatch and slurmrestd 22.05, side by side on the
# same cluster in one run (issue #3). Prints JSON lines and a Markdown table.
#
#   bash bench/bridge.sh [--quick]
#
# Starts its own bridge (port 18080, data under the state dir) and its own
# slurmrestd (unix socket, rest_auth/local, as alice); stops both at the end.
set -euo pipefail
# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

QUICK=0
[[ ${1:-} == --quick ]] && QUICK=1
SEQ_N=$((QUICK ? 20 : 200))
PAR_N=$((QUICK ? 10 : 50))
READ_S=$((QUICK ? 3 : 10))
RPC_S=$((QUICK ? 10 : 60))

ensure_cargo
bash "$CLUSTER" install jq
bash "$CLUSTER" up >/dev/null
cargo build --release -q -p bridge -p odyssey-bench --manifest-path "$REPO/Cargo.toml"
BENCH_BIN=$SHARED_DIR/bin/odyssey-bench
install -m 0755 "$REPO/target/release/odyssey-bench" "$BENCH_BIN"
USER_DIR=$SHARED_DIR/users/alice
RUN=bench-$$
OUT=$(mktemp)

step "starting the bridge and slurmrestd"
DATA=$ODYSSEY_STATE_DIR/bench-bridge-$$
PORT=18080
"$REPO/target/release/bridge" --listen 127.0.0.1:$PORT --metrics-listen 127.0.0.1:$((PORT + 1)) \
  --data-dir "$DATA" --slurm-conf "$SLURM_CONF" --submit-rate 1000000 >"$ODYSSEY_STATE_DIR/log/bench-bridge.log" 2>&1 &
BRIDGE_PID=$!
SOCK=$USER_DIR/slurmrestd.sock
rm -f "$SOCK"
runuser -u alice -- env SLURM_CONF="$SLURM_CONF" slurmrestd -a rest_auth/local -s openapi/v0.0.38 "unix:$SOCK" \
  >"$ODYSSEY_STATE_DIR/log/bench-slurmrestd.log" 2>&1 &
RESTD_PID=$!
cleanup() {
  kill "$BRIDGE_PID" 2>/dev/null || true
  pkill -P "$RESTD_PID" 2>/dev/null || true
  kill "$RESTD_PID" 2>/dev/null || true
  rm -rf "$DATA" "$OUT"
}
trap cleanup EXIT
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && [[ -S $SOCK ]] && break
  sleep 0.1
done
[[ -S $SOCK ]] || { cat "$ODYSSEY_STATE_DIR/log/bench-slurmrestd.log"; fail "slurmrestd did not start"; }
CRED='{"name":"alice","password":"alice-bench-password"}'
curl -fsS -X POST "http://127.0.0.1:$PORT/v1/auth/register" -H 'content-type: application/json' -d "$CRED" >/dev/null
BENCH_TOKEN=$(curl -fsS -X POST "http://127.0.0.1:$PORT/v1/auth/login" -H 'content-type: application/json' -d "$CRED" | jq -r .access_token)
export BENCH_TOKEN
COMMON=(--bridge "http://127.0.0.1:$PORT" --restd-socket "$SOCK" --dir "$USER_DIR")

bench() { # <as-user|root> args...
  local who=$1
  shift
  if [[ $who == alice ]]; then
    (cd "$USER_DIR" && runuser -u alice -- env SLURM_CONF="$SLURM_CONF" "$BENCH_BIN" "$@")
  else
    "$BENCH_BIN" "$@"
  fi | tee -a "$OUT"
}

step "sequential submit latency ($SEQ_N each)"
bench root submit --target raw --per-client "$SEQ_N" --name "$RUN-seq-raw" "${COMMON[@]}"
bench root submit --target bridge --per-client "$SEQ_N" --name "$RUN-seq-bridge" "${COMMON[@]}"
bench alice submit --target restd --per-client "$SEQ_N" --name "$RUN-seq-restd" "${COMMON[@]}"

step "throughput: 8 concurrent clients x $PAR_N"
bench root submit --target raw --clients 8 --per-client "$PAR_N" --name "$RUN-par-raw" "${COMMON[@]}"
bench root submit --target bridge --clients 8 --per-client "$PAR_N" --name "$RUN-par-bridge" "${COMMON[@]}"
bench alice submit --target restd --clients 8 --per-client "$PAR_N" --name "$RUN-par-restd" "${COMMON[@]}"

step "reads (${READ_S}s each)"
JOB_ID=$(curl -fsS "http://127.0.0.1:$PORT/v1/jobs?limit=1" -H "authorization: Bearer $BENCH_TOKEN" | jq -r '.jobs[0].id')
N_SLURM_JOBS=$(squeue -h -t all -o %i | wc -l)
for conns in 1 16; do
  bench root read --target bridge --path "/v1/jobs?limit=100" --connections $conns --seconds "$READ_S" --name x "${COMMON[@]}"
  bench root read --target bridge --path "/v1/jobs/$JOB_ID" --connections $conns --seconds "$READ_S" --name x "${COMMON[@]}"
  bench alice read --target restd --path "/slurm/v0.0.38/jobs" --connections $conns --seconds "$READ_S" --name x "${COMMON[@]}"
done

step "slurmctld RPCs over ${RPC_S}s with 1 and 100 clients reading /v1/jobs"
rpc_total() { sdiag | awk '/Remote Procedure Call statistics by message type/ { on = 1; next } /Remote Procedure Call statistics by user/ { on = 0 } on && /count:/ { sub(/.*count:/, ""); sub(/ .*/, ""); n += $0 } END { print n + 0 }'; }
for clients in 1 100; do
  sdiag -r >/dev/null
  "$BENCH_BIN" read --target bridge --path "/v1/jobs?limit=100" --connections $clients --seconds "$RPC_S" --name x "${COMMON[@]}" >/dev/null
  echo "{\"rpc_clients\": $clients, \"seconds\": $RPC_S, \"slurmctld_rpcs\": $(rpc_total)}" | tee -a "$OUT"
done

RSS_KB=$(awk '/^VmRSS:/ { print $2 }' "/proc/$BRIDGE_PID/status")
echo "{\"bridge_rss_kib\": $RSS_KB, \"jobs_in_history\": $(curl -fsS "http://127.0.0.1:$PORT/v1/jobs?limit=1000" -H "authorization: Bearer $BENCH_TOKEN" | jq '.jobs | length')}" | tee -a "$OUT"

step "summary (slurmctld held $N_SLURM_JOBS jobs during the reads)"
jq -rs '
  def f: . * 100 | round / 100;
  (map(select(.clients == 1)) | "| sequential submit | " + (map("\(.target): p50 \(.p50_ms | f) ms, p95 \(.p95_ms | f) ms") | join("; ")) + " |"),
  (map(select(.clients == 8)) | "| 8 clients | " + (map("\(.target): \(.jobs_per_s | f) jobs/s (verified \(.verified))") | join("; ")) + " |"),
  (map(select(.path != null)) | .[] | "| GET \(.path) x\(.connections) | \(.req_per_s | f) req/s, p50 \(.p50_ms | f) ms, p99 \(.p99_ms | f) ms, errors \(.errors) |"),
  (map(select(.rpc_clients != null)) | .[] | "| slurmctld RPCs, \(.rpc_clients) polling clients, \(.seconds) s | \(.slurmctld_rpcs) |"),
  (map(select(.bridge_rss_kib != null)) | .[] | "| bridge RSS after the run | \(.bridge_rss_kib / 1024 | f) MiB |")
' "$OUT"
