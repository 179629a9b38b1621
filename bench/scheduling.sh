#!/usr/bin/env bash
# The bridge's scheduling policies against fifo on a saturated 3-node
# cluster, side by side in one run (issue #10). Prints JSON lines and a
# Markdown table for docs/BENCHMARKS.md.
#
#   bash bench/scheduling.sh [--quick]
#   PHASES="sjf wfq rr routing" bash bench/scheduling.sh   # a subset
#
# Ordering (one bridge, the cluster's default partition): each phase first
# fills every CPU with filler jobs, submits its workload while they run,
# and cancels them once the policy has placed every waiting job, so the
# policy, not an idle cluster, decides what starts next.
#   sjf vs fifo:            8 jobs of 6 s (time limit 10 min), then 16 of
#                           1 s (1 min); mean turnaround.
#   weighted-fair 3:1:      alice and bob backlogged with 2 s jobs; CPU
#                           seconds each ran while both still had work.
#   round-robin vs fifo:    alice, bob and carol submit backlogs in turn;
#                           when each user's first job started.
# Routing (the cluster restarted with partitions busy:c1 and free:c2,c3; c1
# held by a 20 s job with a 10 min time limit): 12 jobs of 1 s with no partition, earliest-start vs
# round-robin; mean wait. The cluster is put back as it was at the end.
set -euo pipefail
# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

PHASES=${PHASES:-sjf wfq rr routing}
phase() { [[ " $PHASES " == *" $1 "* ]]; }
QUICK=0
[[ ${1:-} == --quick ]] && QUICK=1
SCALE=$((QUICK ? 1 : 2)) # backlog multiplier

ensure_cargo
bash "$CLUSTER" install jq
bash "$CLUSTER" up >/dev/null
cargo build --release -q -p bridge --manifest-path "$REPO/Cargo.toml"
BRIDGE=$REPO/target/release/bridge
OUT=$(mktemp)
PORT=18090
BRIDGE_PID=
DATA=

start_bridge() { # <data dir>
  DATA=$1
  "$BRIDGE" --listen 127.0.0.1:$PORT --metrics-listen 127.0.0.1:$((PORT + 1)) --data-dir "$DATA" \
    --slurm-conf "$SLURM_CONF" --submit-rate 1000000 --poll-interval 0.5 \
    >>"$ODYSSEY_STATE_DIR/log/bench-scheduling-bridge.log" 2>&1 &
  BRIDGE_PID=$!
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && return
    sleep 0.1
  done
  fail "the bridge did not start (see $ODYSSEY_STATE_DIR/log/bench-scheduling-bridge.log)"
}
stop_bridge() {
  if [[ -n $BRIDGE_PID ]]; then
    kill "$BRIDGE_PID" 2>/dev/null || true
    wait "$BRIDGE_PID" 2>/dev/null || true
  fi
  BRIDGE_PID=
  [[ -n $DATA ]] && rm -rf "$DATA"
  DATA=
}
PARTITIONED=0
cleanup() {
  stop_bridge
  scancel -u alice 2>/dev/null || true
  scancel -u bob 2>/dev/null || true
  scancel -u carol 2>/dev/null || true
  ((PARTITIONED)) && bash "$CLUSTER" up >/dev/null 2>&1
  rm -f "$OUT"
}
trap cleanup EXIT

API=http://127.0.0.1:$PORT/v1
declare -A TOKEN
UNIX_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
for user in alice bob carol; do echo "$user:$UNIX_PASSWORD" | chpasswd; done
login() { # <bridge name> <password> [method]
  curl -fsS -X POST "$API/auth/login" -H 'content-type: application/json' \
    -d "$(jq -cn --arg n "$1" --arg p "$2" --arg m "${3:-password}" '{name: $n, password: $p, method: $m}')" \
    | jq -r .access_token
}
sign_in_all() {
  local user
  for user in alice bob carol; do TOKEN[$user]=$(login "$user" "$UNIX_PASSWORD" pam); done
  ADMIN_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  echo "$ADMIN_PASSWORD" | "$BRIDGE" --data-dir "$DATA" user add bench-admin --role admin >/dev/null
  TOKEN[admin]=$(login bench-admin "$ADMIN_PASSWORD")
}
policy() { # <json>
  curl -fsS -X PUT "$API/policy" -H "authorization: Bearer ${TOKEN[admin]}" -H 'content-type: application/json' \
    -d "$1" >/dev/null
}
submit() { # <user> <seconds> <time limit minutes> [extra json]: prints the bridge id
  local body
  body=$(jq -cn --arg d "$SHARED_DIR/users/$1" --arg s "$2" --argjson t "$3" --argjson x "${4:-{\}}" \
    '{command: ["sleep", $s], time_limit: $t, working_dir: $d, name: "bench-sched"} + $x')
  curl -fsS -X POST "$API/jobs" -H "authorization: Bearer ${TOKEN[$1]}" -H 'content-type: application/json' \
    -d "$body" | jq -r .id
}
record() { # <user> <id>
  curl -fsS "$API/jobs/$2" -H "authorization: Bearer ${TOKEN[$1]}"
}
wait_done() { # <user> <id>...
  local user=$1 id
  shift
  for id in "$@"; do
    for _ in $(seq 1200); do
      [[ $(record "$user" "$id" | jq -r .finished) == true ]] && break
      sleep 0.25
    done
  done
}
wait_started() { # <user> <id>: until the job runs (or ran)
  for _ in $(seq 600); do
    [[ $(record "$1" "$2" | jq -r '.started_at // empty') ]] && return
    sleep 0.1
  done
  fail "job $2 never started"
}
CPUS=$(sinfo -h -o %C | awk -F/ '{ print $4 }')
FILLERS=()
fill() { # one 1-CPU filler job per CPU, all running (carol's, so they
  # weigh on no measured user); `release` ends them
  local i
  FILLERS=()
  for ((i = 0; i < CPUS; i++)); do FILLERS+=("$(submit carol 600 10)"); done
  wait_started carol "${FILLERS[-1]}"
}
release() { # <user:id>...: once the policy has placed every one of these
  # pending jobs (their records say so), the fillers are cancelled: the
  # cluster frees at once and the policy's order decides what starts
  local pair id
  for pair in "$@"; do
    for _ in $(seq 600); do
      [[ $(record "${pair%%:*}" "${pair#*:}" | jq -r '.ordering.policy // empty') ]] && break
      sleep 0.1
    done
  done
  for id in "${FILLERS[@]}"; do
    curl -fsS -X DELETE "$API/jobs/$id" -H "authorization: Bearer ${TOKEN[carol]}" >/dev/null
  done
}
# Every job's record as one JSON array: [{user, id, submitted_at, started_at, ended_at, time_limit}].
records() { # <user:id>...
  local pair
  for pair in "$@"; do
    record "${pair%%:*}" "${pair#*:}" | jq -c --arg u "${pair%%:*}" '{user: $u, id, submitted_at, started_at, ended_at, partition, routing, ordering}'
  done | jq -s .
}

# ---------------------------------------------------------------- ordering
step "ordering: sjf vs fifo, 8 x 6 s then 16 x 1 s behind $CPUS running fillers"
start_bridge "$ODYSSEY_STATE_DIR/bench-scheduling-$$"
sign_in_all
for ordering in fifo sjf; do
  phase sjf || continue
  policy "{\"ordering\": \"$ordering\"}"
  fill
  jobs=()
  for _ in $(seq 8); do jobs+=("alice:$(submit alice 6 10)"); done
  for _ in $(seq 16); do jobs+=("alice:$(submit alice 1 1)"); done
  release "${jobs[@]}"
  wait_done alice "${jobs[@]#alice:}"
  records "${jobs[@]}" | jq -c --arg p "$ordering" '{phase: "sjf-vs-fifo", ordering: $p, jobs: length,
      mean_turnaround_s: (map(.ended_at - .submitted_at) | add / length),
      mean_short_turnaround_s: (.[8:] | map(.ended_at - .submitted_at) | add / length),
      mean_long_turnaround_s: (.[:8] | map(.ended_at - .submitted_at) | add / length)}' | tee -a "$OUT"
done

step "ordering: weighted-fair alice:bob = 3:1, both backlogged"
phase wfq && {
# A fresh bridge: weighted-fair counts what each user consumed (decaying
# over 10 min), and alice ran the sjf phase's whole workload.
stop_bridge
start_bridge "$ODYSSEY_STATE_DIR/bench-scheduling-wfq-$$"
sign_in_all
policy '{"ordering": "weighted-fair", "user_weights": {"alice": 3, "bob": 1}}'
fill
jobs=()
for _ in $(seq $((15 * SCALE))); do
  jobs+=("bob:$(submit bob 2 1)")
  jobs+=("alice:$(submit alice 2 1)")
done
release "${jobs[@]}"
for pair in "${jobs[@]}"; do wait_done "${pair%%:*}" "${pair#*:}"; done
# The window: from the first start to the moment the first user had nothing
# left to start (after it, the other user runs alone).
records "${jobs[@]}" | jq -c '
  (map(.started_at) | min) as $from
  | ([group_by(.user)[] | map(.started_at) | max] | min) as $to
  | def ran($u): map(select(.user == $u) | ([.ended_at, $to] | min) - ([.started_at, $from] | max) | select(. > 0)) | add // 0;
  {phase: "weighted-fair", weights: "alice 3, bob 1", window_s: ($to - $from),
   alice_cpu_s: ran("alice"), bob_cpu_s: ran("bob"), ratio: (ran("alice") / ran("bob"))}' | tee -a "$OUT"
}

step "ordering: round-robin vs fifo across alice, bob and carol's backlogs"
for ordering in fifo round-robin; do
  phase rr || continue
  policy "{\"ordering\": \"$ordering\"}"
  fill
  jobs=()
  for user in alice bob carol; do
    for _ in $(seq $((6 * SCALE))); do jobs+=("$user:$(submit "$user" 1 1)"); done
  done
  release "${jobs[@]}"
  for pair in "${jobs[@]}"; do wait_done "${pair%%:*}" "${pair#*:}"; done
  records "${jobs[@]}" | jq -c --arg p "$ordering" '
    (map(.submitted_at) | min) as $t0
    | [group_by(.user)[] | {user: .[0].user, first_start_s: (map(.started_at) | min - $t0), last_start_s: (map(.started_at) | max - $t0)}] as $u
    | {phase: "round-robin-vs-fifo", ordering: $p,
       first_start_s: ($u | map({(.user): (.first_start_s * 100 | round / 100)}) | add),
       worst_first_start_s: ($u | map(.first_start_s) | max),
       a_first_job_waited_for_a_whole_backlog: ([$u[] as $a | $u[] as $b | select($a.user != $b.user and $a.first_start_s > $b.last_start_s)] | length > 0)}' \
    | tee -a "$OUT"
done
stop_bridge

# ---------------------------------------------------------------- routing
step "routing: earliest-start vs round-robin, partitions busy (c1, held) and free (c2, c3)"
phase routing && {
PARTITIONED=1
bash "$CLUSTER" up --partitions "busy:c1 free:c2,c3" >/dev/null
start_bridge "$ODYSSEY_STATE_DIR/bench-scheduling-routing-$$"
sign_in_all
sleep 1 # the bridge's first poll reads the partitions
for routing in round-robin earliest-start; do
  policy "{\"routing\": \"$routing\"}"
  # SLURM's start estimates come from time limits: the holder's is 10 min.
  holder=$(submit alice 20 10 '{"partition": "busy", "exclusive": true}')
  wait_started alice "$holder"
  jobs=()
  for _ in $(seq 12); do jobs+=("bob:$(submit bob 1 1)"); done
  for pair in "${jobs[@]}"; do wait_done bob "${pair#*:}"; done
  records "${jobs[@]}" | jq -c --arg p "$routing" '{phase: "routing", routing: $p, jobs: length,
      on_busy: map(select(.partition == "busy")) | length, on_free: map(select(.partition == "free")) | length,
      mean_wait_s: (map(.started_at - .submitted_at) | add / length),
      example_why: .[0].routing.why}' | tee -a "$OUT"
  wait_done alice "$holder"
done
stop_bridge
bash "$CLUSTER" up >/dev/null
PARTITIONED=0
}

[[ $PHASES == "sjf wfq rr routing" ]] || exit 0
step "summary"
jq -rs '
  def f: . * 100 | round / 100;
  (map(select(.phase == "sjf-vs-fifo")) | INDEX(.ordering)) as $s
  | (map(select(.phase == "round-robin-vs-fifo")) | INDEX(.ordering)) as $r
  | (map(select(.phase == "routing")) | INDEX(.routing)) as $g
  | (map(select(.phase == "weighted-fair"))[0]) as $w
  | "| measure | fifo / baseline | policy | goal |",
    "|---|---|---|---|",
    "| sjf: mean turnaround, 24 jobs (s) | \($s.fifo.mean_turnaround_s | f) | \($s.sjf.mean_turnaround_s | f) (\((1 - $s.sjf.mean_turnaround_s / $s.fifo.mean_turnaround_s) * 100 | round) % lower) | >= 30 % lower |",
    "| weighted-fair 3:1: CPU seconds alice / bob over \($w.window_s | f) s | - | \($w.alice_cpu_s | f) / \($w.bob_cpu_s | f) = \($w.ratio | f) | 3 +- 15 % |",
    "| round-robin: latest first start of a user (s) | \($r.fifo.worst_first_start_s | f) (a first job behind a whole backlog: \($r.fifo.a_first_job_waited_for_a_whole_backlog)) | \($r["round-robin"].worst_first_start_s | f) (\($r["round-robin"].a_first_job_waited_for_a_whole_backlog)) | none waits for a whole backlog |",
    "| routing earliest-start: mean wait, 12 jobs (s); jobs on busy | \($g["round-robin"].mean_wait_s | f); \($g["round-robin"].on_busy) (round-robin) | \($g["earliest-start"].mean_wait_s | f); \($g["earliest-start"].on_busy) | lands on the free one |"
' "$OUT"
