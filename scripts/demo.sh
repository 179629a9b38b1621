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
bash "$CLUSTER" install jq
step "bringing the cluster up"
bash "$CLUSTER" up
bash "$REPO/scripts/build.sh"
N_NODES=$(sinfo -h -N -o '%N' | sort -u | wc -l)

step "starting Prometheus and Alertmanager, scraping the bridge's metrics at 127.0.0.1:$((PORT + 1))"
bash "$REPO/slurm-conf/monitoring" up --bridge-metrics "127.0.0.1:$((PORT + 1))"

step "starting the bridge on 127.0.0.1:$PORT"
PID_FILE=$ODYSSEY_STATE_DIR/run/bridge.pid
LOG_FILE=$ODYSSEY_STATE_DIR/log/bridge.log
DATA_DIR=${BRIDGE_DATA_DIR:-/var/lib/odyssey-bridge}
# A bridge left by an earlier demo holds the port: stop it first.
if [[ -s $PID_FILE ]] && [[ $(cat "/proc/$(cat "$PID_FILE")/comm" 2>/dev/null) == bridge ]]; then
  kill "$(cat "$PID_FILE")" && sleep 0.5
fi
"$REPO/target/release/bridge" --listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$((PORT + 1))" \
  --data-dir "$DATA_DIR" --slurm-conf "$SLURM_CONF" --mpi-binary "$SHARED_DIR/bin/odyssey-mpi" >"$LOG_FILE" 2>&1 &
BRIDGE_PID=$!
echo "$BRIDGE_PID" >"$PID_FILE"
trap 'kill "$BRIDGE_PID" 2>/dev/null || true; rm -f "$PID_FILE"' EXIT
API=http://127.0.0.1:$PORT

health=""
for _ in $(seq 100); do
  health=$(curl -fsS "$API/readyz" 2>/dev/null || true)
  [[ $health == *'"ready":true'* ]] && break
  kill -0 "$BRIDGE_PID" 2>/dev/null || { cat "$LOG_FILE" >&2; fail "the bridge exited"; }
  sleep 0.1
done
[[ $health == *'"ready":true'* ]] || { cat "$LOG_FILE" >&2; fail "the bridge is not ready: $health"; }
show() { printf '\n$ %s\n' "$*" >&2; }
show "curl $API/healthz"
curl -fsS "$API/healthz" | jq -c .

step "signing alice in with her Unix password (PAM): the proof maps her bridge account to Unix alice"
# alice is the cluster's test account; the demo gives her a fresh random Unix
# password each run, so no known password is ever left on the machine.
ALICE_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
echo "alice:$ALICE_PASSWORD" | chpasswd
CREDENTIALS=$(jq -cn --arg p "$ALICE_PASSWORD" '{name: "alice", password: $p, method: "pam"}')
show "curl -X POST $API/v1/auth/login -d '{\"name\": \"alice\", \"password\": \"...\", \"method\": \"pam\"}'"
TOKEN=$(curl -fsS -X POST "$API/v1/auth/login" -H 'content-type: application/json' -d "$CREDENTIALS" | jq -r .access_token)
show "curl $API/v1/auth/me"
curl -fsS "$API/v1/auth/me" -H "authorization: Bearer $TOKEN" | jq -c '{name, role, unix_user, unix_mapped_by}'
echo "access token: ${TOKEN:0:24}..."
AUTH=(-H "authorization: Bearer $TOKEN")

step "submitting a verified MPI kernel job: Jacobi heat equation, $N_NODES nodes x 2 ranks, as alice"
WORK_DIR=$SHARED_DIR/users/alice
# The grid side must divide over the process grid: a multiple of the rank count does.
JOB_SPEC=$(jq -n --arg dir "$WORK_DIR" --argjson nodes "$N_NODES" '{
  name: "jacobi-demo", kernel: "jacobi", params: {n: ($nodes * 200), max_iters: 2000},
  nodes: $nodes, ntasks: ($nodes * 2), working_dir: $dir, time_limit: 5
}')
show "curl -X POST $API/v1/jobs -d '$(jq -c . <<<"$JOB_SPEC")'"
JOB=$(curl -fsS -X POST "$API/v1/jobs" "${AUTH[@]}" -H 'content-type: application/json' -d "$JOB_SPEC")
jq -c '{id, slurm_job_id, state, user, unix_user}' <<<"$JOB"
echo "the batch script the bridge wrote:"
jq -r .script <<<"$JOB" | sed 's/^/    /'
JOB_ID=$(jq -r .id <<<"$JOB")

step "following its output (Server-Sent Events until the job ends)"
show "curl -N '$API/v1/jobs/$JOB_ID/output?follow=true'"
curl -fsSN --max-time 120 "$API/v1/jobs/$JOB_ID/output?follow=true" "${AUTH[@]}" \
  | awk '/^event:/ { event = $2 } /^data:/ && event == "output" { sub(/^data: ?/, ""); print }'

step "the job's record, timeline and collated result"
RECORD=""
for _ in $(seq 100); do
  RECORD=$(curl -fsS "$API/v1/jobs/$JOB_ID" "${AUTH[@]}")
  [[ $(jq -r '.result.collated' <<<"$RECORD") == true ]] && break
  sleep 0.1
done
show "curl $API/v1/jobs/$JOB_ID"
jq -c '{id, slurm_job_id, state, exit_code, nodes, result, failure}' <<<"$RECORD"
show "curl $API/v1/jobs/$JOB_ID/events"
curl -fsS "$API/v1/jobs/$JOB_ID/events" "${AUTH[@]}" | jq -c '.[]'
[[ $(jq -r .state <<<"$RECORD") == COMPLETED ]] || fail "job $JOB_ID ended $(jq -r .state <<<"$RECORD")"
show "curl $API/v1/jobs/$JOB_ID/result"
RESULT=$(curl -fsS "$API/v1/jobs/$JOB_ID/result" "${AUTH[@]}")
jq -c '{kernel, params, ranks, nodes, wall_time_s, bandwidth_gb_s, error_norm, tolerance, verified,
        iterations: .details.iterations, process_grid: .details.process_grid}' <<<"$RESULT"
[[ $(jq -r .verified <<<"$RESULT") == true ]] || fail "job $JOB_ID did not produce a verified result"

step "the real Prometheus scrapes the bridge: the cluster as it sees it"
PROM=http://127.0.0.1:9090
prom_value() { # <PromQL>: the first sample's value, or empty
  curl -fsS "$PROM/api/v1/query" --data-urlencode "query=$1" 2>/dev/null | jq -r '.data.result[0].value[1] // empty'
}
idle_nodes() { sinfo -h -N -t idle -o '%N' | sort -u | wc -l; }
# The job just ended: Prometheus sees it within a scrape (5 s) of the
# bridge's poll (1 s).
for _ in $(seq 150); do
  [[ $(prom_value 'up{job="bridge"}') == 1 && $(prom_value slurm_nodes_idle) == "$(idle_nodes)" ]] && break
  sleep 0.2
done
show "curl $PROM/api/v1/query?query=up{job=\"bridge\"}"
echo "bridge target up: $(prom_value 'up{job="bridge"}')"
show "curl $PROM/api/v1/query?query=slurm_nodes_idle"
echo "slurm_nodes_idle: $(prom_value slurm_nodes_idle) (sinfo says $(idle_nodes) idle)"
[[ $(prom_value 'up{job="bridge"}') == 1 ]] || fail "Prometheus does not see the bridge up"
[[ $(prom_value slurm_nodes_idle) == "$(idle_nodes)" ]] || fail "Prometheus's slurm_nodes_idle is not sinfo's idle count"
echo "alerts firing: $(curl -fsS "$PROM/api/v1/alerts" | jq -c '[.data.alerts[] | select(.state == "firing") | .labels.alertname]')"

if ((ONCE)); then
  step "demo done"
  exit 0
fi
step "the bridge serves $API (metrics on 127.0.0.1:$((PORT + 1))/metrics, log: $LOG_FILE); Ctrl-C stops it"
echo "the dashboard: $API/ui/ (sign in as alice, Unix password $ALICE_PASSWORD, set for this demo)"
echo "the command line: $REPO/target/release/odyssey login --url $API --user alice ; then  odyssey jobs"
echo "Prometheus: $PROM (targets, alerts), Alertmanager: http://127.0.0.1:9093; stop them with  slurm-conf/monitoring down"
echo "the cluster stays up: use it with  export SLURM_CONF=$SLURM_CONF ; stop it with  $CLUSTER down"
wait "$BRIDGE_PID"
