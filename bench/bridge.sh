#!/usr/bin/env bash
# The bridge against raw sbatch and slurmrestd 22.05, side by side on the
# same cluster in one run (issues #3, #9). Prints JSON lines and a Markdown
# table.
#
#   bash bench/bridge.sh [--quick] [--submit-only]
#
# --quick: small counts (a smoke run); --submit-only: the submission phases
# (1, 8 and 100 clients), without the reads, RPC counts and seeded history.
#
# Starts two bridges of its own (port 18080 submitting through libslurm,
# port 18082 through sbatch; data under the state dir) and its own
# slurmrestd (unix socket, rest_auth/local, as alice); stops them at the end.
set -euo pipefail
# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

QUICK=0
SUBMIT_ONLY=0
for arg in "$@"; do
  case $arg in
    --quick) QUICK=1 ;;
    --submit-only) SUBMIT_ONLY=1 ;;
    *) fail "unknown option $arg (use --quick, --submit-only)" ;;
  esac
done
SEQ_N=$((QUICK ? 20 : 200))
PAR_N=$((QUICK ? 10 : 50))
READ_S=$((QUICK ? 3 : 10))
RPC_S=$((QUICK ? 10 : 60))
SEED_ROWS=$((QUICK ? 100000 : 1000000))
BURST_PER_CLIENT=$((QUICK ? 5 : 100))

ensure_cargo
bash "$CLUSTER" install jq wrk
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
  --data-dir "$DATA" --slurm-conf "$SLURM_CONF" --submit-rate 1000000 --submit-via libslurm \
  >"$ODYSSEY_STATE_DIR/log/bench-bridge.log" 2>&1 &
BRIDGE_PID=$!
DATA_SB=$ODYSSEY_STATE_DIR/bench-bridge-sbatch-$$
PORT_SB=18082
"$REPO/target/release/bridge" --listen 127.0.0.1:$PORT_SB --metrics-listen 127.0.0.1:$((PORT_SB + 1)) \
  --data-dir "$DATA_SB" --slurm-conf "$SLURM_CONF" --submit-rate 1000000 --submit-via sbatch \
  >"$ODYSSEY_STATE_DIR/log/bench-bridge-sbatch.log" 2>&1 &
BRIDGE_SB_PID=$!
SOCK=$USER_DIR/slurmrestd.sock
rm -f "$SOCK"
runuser -u alice -- env SLURM_CONF="$SLURM_CONF" slurmrestd -a rest_auth/local -s openapi/v0.0.38 "unix:$SOCK" \
  >"$ODYSSEY_STATE_DIR/log/bench-slurmrestd.log" 2>&1 &
RESTD_PID=$!
cleanup() {
  # A phase that failed leaves its jobs queued: they would hold the cluster
  # for whatever runs next.
  squeue -h -t PD,R,CG -u alice -o '%i %j' | awk -v run="$RUN-" 'index($2, run) == 1 { print $1 }' \
    | xargs -r scancel 2>/dev/null || true
  kill "$BRIDGE_PID" "$BRIDGE_SB_PID" 2>/dev/null || true
  pkill -P "$RESTD_PID" 2>/dev/null || true
  kill "$RESTD_PID" 2>/dev/null || true
  rm -rf "$DATA" "$DATA_SB" "$OUT"
}
trap cleanup EXIT
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && curl -fs "http://127.0.0.1:$PORT_SB/readyz" >/dev/null 2>&1 \
    && [[ -S $SOCK ]] && break
  sleep 0.1
done
[[ -S $SOCK ]] || { cat "$ODYSSEY_STATE_DIR/log/bench-slurmrestd.log"; fail "slurmrestd did not start"; }
# alice signs in with her Unix password (PAM), which maps her account: only
# a proven mapping may submit (issue #8). A fresh random password per run.
UNIX_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
echo "alice:$UNIX_PASSWORD" | chpasswd
pam_login() { # <port>
  curl -fsS -X POST "http://127.0.0.1:$1/v1/auth/login" -H 'content-type: application/json' \
    -d "$(jq -cn --arg p "$UNIX_PASSWORD" '{name: "alice", password: $p, method: "pam"}')" | jq -r .access_token
}
BENCH_TOKEN=$(pam_login $PORT)
BENCH_TOKEN_SBATCH=$(pam_login $PORT_SB)
export BENCH_TOKEN_SBATCH
for port in $PORT $PORT_SB; do
  echo "{\"bridge_port\": $port, \"submit_via\": $(curl -fsS "http://127.0.0.1:$port/readyz" | jq .submit_via)}" | tee -a "$OUT"
done
# The seeded history below has a password account (reads only).
CRED='{"name":"alice","password":"alice-bench-password"}'
export BENCH_TOKEN
COMMON=(--bridge "http://127.0.0.1:$PORT" --bridge-sbatch "http://127.0.0.1:$PORT_SB" --restd-socket "$SOCK" --dir "$USER_DIR")

bench() { # <as-user|root> args...
  local who=$1
  shift
  if [[ $who == alice ]]; then
    (cd "$USER_DIR" && runuser -u alice -- env SLURM_CONF="$SLURM_CONF" "$BENCH_BIN" "$@")
  else
    "$BENCH_BIN" "$@"
  fi | tee -a "$OUT"
}

# CPU seconds (user + system) of a process itself, and of it with the
# children it waited for (the sbatch processes of the sbatch bridge).
cpu_s() { # <pid> <self|children>
  awk -v which="$2" -v hz="$(getconf CLK_TCK)" '{ s = $14 + $15; if (which == "children") s += $16 + $17; printf "%.3f", s / hz }' "/proc/$1/stat"
}
# Where the machine's CPU goes during a phase (issue #9: the 2 cores are
# shared by slurmctld, munged, the slurmds, both bridges with their pollers'
# children, slurmrestd and the clients): CPU seconds of these processes,
# with the children they reaped, and the machine's busy seconds.
cpu_of() { # <pid>...
  local pid files=()
  for pid in "$@"; do [[ -r /proc/$pid/stat ]] && files+=("/proc/$pid/stat"); done
  ((${#files[@]})) || { echo 0; return; }
  awk -v hz="$(getconf CLK_TCK)" '{ s += $14 + $15 + $16 + $17 } END { printf "%.3f", s / hz }' "${files[@]}"
}
cpu_snapshot() { # machine busy, slurmctld, munged, slurmd, bridge, bridge (sbatch), slurmrestd; seconds
  # shellcheck disable=SC2046 # one pid per word
  echo "$(awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%.3f", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat)" \
    "$(cpu_of $(pgrep -x slurmctld))" "$(cpu_of $(pgrep -x munged))" "$(cpu_of $(pgrep -x slurmd))" \
    "$(cpu_of "$BRIDGE_PID")" "$(cpu_of "$BRIDGE_SB_PID")" "$(cpu_of $(pgrep -P "$RESTD_PID" -x slurmrestd))" "$(date +%s.%N)"
}
cpu_split() { # <target> <jobs> <snapshot before> <snapshot after>
  awk -v t="$1" -v n="$2" -v a="$3" -v b="$4" -v cpus="$(nproc)" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    for (i = 1; i <= 8; i++) d[i] = y[i] - x[i]
    named = d[2] + d[3] + d[4] + d[5] + d[6] + d[7]
    printf "{\"cpu_split\": \"%s\", \"jobs\": %d, \"machine_busy_pct\": %.1f, \"ms_per_job\": {\"slurmctld\": %.3f, \"munged\": %.3f, \"slurmd\": %.3f, \"bridge_libslurm\": %.3f, \"bridge_sbatch\": %.3f, \"slurmrestd\": %.3f, \"rest\": %.3f}}\n",
      t, n, 100 * d[1] / (d[8] * cpus), d[2] * 1000 / n, d[3] * 1000 / n, d[4] * 1000 / n, d[5] * 1000 / n, d[6] * 1000 / n, d[7] * 1000 / n, (d[1] - named) * 1000 / n
  }'
}
cancel_run() { # <name prefix>: frees the cluster after a verified phase
  local target
  for target in bridge bridge-sbatch restd raw; do
    scancel -u alice --name="$1-$target" 2>/dev/null || true
  done
}

summary() {
  jq -rs '
    def f: . * 100 | round / 100;
    (map(select(.clients == 1)) | .[] | "| sequential submit, \(.target) | p50 \(.p50_ms | f) ms, p95 \(.p95_ms | f) ms (\(.submitted) jobs, verified \(.verified)) |"),
    (map(select(.clients == 8)) | .[] | "| 8 clients, \(.target) | \(.jobs_per_s | f) jobs/s (\(.submitted) jobs, verified \(.verified)) |"),
    (map(select(.cpu_target != null)) | .[] | "| CPU per submission, \(.cpu_target) | itself \(.cpu_ms_per_job | f) ms, with its children (sbatch) \(.with_children_cpu_ms_per_job | f) ms |"),
    (map(select(.cpu_split != null)) | .[] | "| where the CPU went, 8 clients, \(.cpu_split) | machine busy \(.machine_busy_pct) %; ms per job: slurmctld \(.ms_per_job.slurmctld), munged \(.ms_per_job.munged), slurmd \(.ms_per_job.slurmd), bridge (libslurm) \(.ms_per_job.bridge_libslurm), bridge (sbatch) \(.ms_per_job.bridge_sbatch), slurmrestd \(.ms_per_job.slurmrestd), the rest (clients, kernel) \(.ms_per_job.rest) |"),
    (map(select(.clients == 100)) | .[] | "| 100 clients, \(.target) | \(.jobs_per_s | f) jobs/s, p50 \(.p50_ms | f) ms, p99 \(.p99_ms | f) ms (\(.submitted) jobs, \(.unique) unique, \(.present_in_squeue) in squeue, verified \(.verified)) |"),
    (map(select(.path != null)) | .[] | "| GET \(.path), \(.connections) conn | \(.req_per_s | f) req/s, p50 \(.p50_ms | f) ms, p99 \(.p99_ms | f) ms, errors \(.errors) |"),
    (map(select(.rpc_clients != null)) | .[] | "| slurmctld RPCs in \(.seconds) s, \(.rpc_clients) clients polling the bridge | \(.slurmctld_rpcs) |"),
    (map(select(.seeded_rows != null)) | .[] | "| generated history | \(.seeded_rows) jobs in \(.seconds | f) s |"),
    (map(select(.bridge_rss_kib != null)) | .[] | "| bridge RSS, \(.rss) | \(.bridge_rss_kib / 1024 | f) MiB |")
  ' "$OUT"
}

# Every submission runs as alice: raw is her own `sbatch --parsable`.
step "sequential submit latency, interleaved raw/bridge (libslurm)/bridge (sbatch)/slurmrestd ($SEQ_N each)"
bench alice submit --target raw,bridge,bridge-sbatch,restd --per-client "$SEQ_N" --name "$RUN-seq" "${COMMON[@]}"
cancel_run "$RUN-seq"

step "throughput: 8 concurrent clients x $PAR_N, with the bridges' CPU per submission"
for target in raw bridge bridge-sbatch restd; do
  case $target in
    bridge) pid=$BRIDGE_PID ;;
    bridge-sbatch) pid=$BRIDGE_SB_PID ;;
    restd) pid=$(pgrep -P "$RESTD_PID" -x slurmrestd) ;;
    *) pid= ;;
  esac
  [[ -n $pid ]] && before_self=$(cpu_s "$pid" self) && before_all=$(cpu_s "$pid" children)
  split_before=$(cpu_snapshot)
  bench alice submit --target $target --clients 8 --per-client "$PAR_N" --name "$RUN-par" "${COMMON[@]}"
  cpu_split "$target" $((8 * PAR_N)) "$split_before" "$(cpu_snapshot)" | tee -a "$OUT"
  if [[ -n $pid ]]; then
    jobs=$((8 * PAR_N))
    awk -v t="$target" -v n=$jobs -v s0="$before_self" -v s1="$(cpu_s "$pid" self)" -v a0="$before_all" -v a1="$(cpu_s "$pid" children)" \
      'BEGIN { printf "{\"cpu_target\": \"%s\", \"jobs\": %d, \"cpu_ms_per_job\": %.3f, \"with_children_cpu_ms_per_job\": %.3f}\n", t, n, (s1 - s0) * 1000 / n, (a1 - a0) * 1000 / n }' | tee -a "$OUT"
  fi
done
cancel_run "$RUN-par"

step "a burst: 100 concurrent clients x $BURST_PER_CLIENT, every job checked exactly once in squeue"
for target in bridge restd bridge-sbatch; do
  bench alice submit --target $target --clients 100 --per-client "$BURST_PER_CLIENT" --name "$RUN-burst" "${COMMON[@]}"
  cancel_run "$RUN-burst"
done

if ((SUBMIT_ONLY)); then
  step "summary"
  summary
  exit 0
fi

step "waiting for the submitted jobs to finish, so reads compete with no job launches"
for _ in $(seq 1200); do
  [[ -z $(squeue -h -t PD,R,CG,CF -o %i | head -1) ]] && break
  sleep 0.5
done
sleep 2

step "reads (${READ_S}s each)"
JOB_ID=$(curl -fsS "http://127.0.0.1:$PORT/v1/jobs?limit=1" -H "authorization: Bearer $BENCH_TOKEN" | jq -r '.jobs[0].id')
N_SLURM_JOBS=$(squeue -h -t all -o %i | wc -l)
# wrk for the bridge (a C load generator leaves more of the 2 cores to the
# server); slurmrestd on its unix socket through odyssey-bench.
wrk_read() { # <base> <path> <connections> [seconds]
  local threads=$(($3 < 2 ? 1 : 2))
  wrk -t"$threads" -c"$3" -d"${4:-$READ_S}"s --latency -H "authorization: Bearer $BENCH_TOKEN" "$1$2" | awk -v path="$2" -v conns="$3" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) } /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { errors = $NF }
    END { printf "{\"path\": \"%s\", \"connections\": %d, \"req_per_s\": %s, \"p50_ms\": %s, \"p99_ms\": %s, \"errors\": %d, \"tool\": \"wrk\"}\n", path, conns, rps, p50, p99, errors + 0 }' | tee -a "$OUT"
}
for conns in 1 16; do
  wrk_read "http://127.0.0.1:$PORT" "/v1/jobs?limit=100" $conns
  wrk_read "http://127.0.0.1:$PORT" "/v1/jobs/$JOB_ID" $conns
  bench alice read --target restd --path "/slurm/v0.0.38/jobs" --connections $conns --seconds "$READ_S" --name x "${COMMON[@]}"
done

step "slurmctld RPCs over ${RPC_S}s with 1 and 100 clients reading /v1/jobs"
rpc_total() { sdiag | awk '/Remote Procedure Call statistics by message type/ { on = 1; next } /Remote Procedure Call statistics by user/ { on = 0 } on && /count:/ { sub(/.*count:/, ""); sub(/ .*/, ""); n += $0 } END { print n + 0 }'; }
for clients in 1 100; do
  sdiag -r >/dev/null
  "$BENCH_BIN" read --target bridge --path "/v1/jobs?limit=100" --connections $clients --seconds "$RPC_S" --name x "${COMMON[@]}" >/dev/null
  echo "{\"rpc_clients\": $clients, \"seconds\": $RPC_S, \"slurmctld_rpcs\": $(rpc_total)}" | tee -a "$OUT"
done

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
echo "{\"rss\": \"after the run\", \"bridge_rss_kib\": $(rss_kib "$BRIDGE_PID")}" | tee -a "$OUT"

step "a history of $SEED_ROWS generated jobs"
SEED_DATA=$ODYSSEY_STATE_DIR/bench-seed-$$
"$BENCH_BIN" seed --data-dir "$SEED_DATA" --rows "$SEED_ROWS" --password alice-bench-password | tee -a "$OUT"
SEED_PORT=18090
"$REPO/target/release/bridge" --listen 127.0.0.1:$SEED_PORT --metrics-listen 127.0.0.1:$((SEED_PORT + 1)) \
  --data-dir "$SEED_DATA" --slurm-conf "$SLURM_CONF" >"$ODYSSEY_STATE_DIR/log/bench-seed-bridge.log" 2>&1 &
SEED_PID=$!
for _ in $(seq 300); do curl -fs "http://127.0.0.1:$SEED_PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
sleep 2
echo "{\"rss\": \"idle, $SEED_ROWS jobs in history\", \"bridge_rss_kib\": $(rss_kib "$SEED_PID")}" | tee -a "$OUT"
BENCH_TOKEN=$(curl -fsS -X POST "http://127.0.0.1:$SEED_PORT/v1/auth/login" -H 'content-type: application/json' -d "$CRED" | jq -r .access_token)
wrk_read "http://127.0.0.1:$SEED_PORT" "/v1/jobs?state=FAILED&limit=100" 1
wrk_read "http://127.0.0.1:$SEED_PORT" "/v1/jobs?name=job7&limit=100" 1
wrk_read "http://127.0.0.1:$SEED_PORT" "/v1/jobs?state=FAILED&name=job7&since=1700500000&limit=100" 1
echo "{\"rss\": \"after filtered reads, $SEED_ROWS jobs in history\", \"bridge_rss_kib\": $(rss_kib "$SEED_PID")}" | tee -a "$OUT"
kill "$SEED_PID"
rm -rf "$SEED_DATA"

step "summary (slurmctld held $N_SLURM_JOBS jobs during the reads)"
summary
