#!/usr/bin/env bash
# Checks the live bridge against its own API description with schemathesis
# (every check), as part of scripts/test.sh: every response must match its
# schema, every status sent must be documented, every schema-valid request
# accepted or refused for a documented reason, every invalid one refused.
#
#   bash scripts/api-check.sh [--max-examples N]
#
# Needs the cluster up and target/release/bridge built (scripts/build.sh).
# schemathesis is pinned and lives in a venv under the cluster's state dir.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${1:+$2}
MAX_EXAMPLES=${MAX_EXAMPLES:-${API_CHECK_MAX_EXAMPLES:-25}}
VENV=$ODYSSEY_STATE_DIR/tools/schemathesis-$SCHEMATHESIS_VERSION
PORT=${API_CHECK_PORT:-18941}
API=http://127.0.0.1:$PORT

# A venv is complete once the stamp exists; a half-made one (an install cut
# short) is made again.
if [[ ! -f $VENV/.installed ]]; then
  step "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
  touch "$VENV/.installed"
fi

WORK=$(mktemp -d /tmp/api-check.XXXXXX)
IDP_PID=
trap 'kill $IDP_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
# The test identity provider (issue #15), so /v1/auth/oidc lists a real one
# and /v1/auth/oidc/token meets its issuer: scripts/test.sh installed it.
[[ -d $REPO/tests/oidc-idp/node_modules/oidc-provider ]] \
  || fail "the test IdP's packages are missing: npm ci --prefix tests/oidc-idp"
IDP_PORT=$((PORT + 3))
node "$REPO/tests/oidc-idp/idp.mjs" --port "$IDP_PORT" --keys "$WORK/idp-keys.json" >"$WORK/idp.log" 2>&1 &
IDP_PID=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$IDP_PORT/.well-known/openid-configuration" >/dev/null 2>&1 && break; sleep 0.1; done
cat >"$WORK/bridge.toml" <<TOML
[[oidc]]
issuer = "http://127.0.0.1:$IDP_PORT"
audience = "urn:cloud-odyssey:api"
client_id = "odyssey"
user_groups = ["hpc-users"]
TOML

step "starting a bridge for the API check on $API"
"$REPO/target/release/bridge" --config "$WORK/bridge.toml" \
  --listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$((PORT + 1))" \
  --data-dir "$WORK/data" --slurm-conf "$SLURM_CONF" --mpi-binary "$SHARED_DIR/bin/odyssey-mpi" \
  --submit-rate 100000 --login-rate-per-address 100000 --login-rate-per-name 100000 \
  --health-secret-file "$ODYSSEY_STATE_DIR/etc/health.secret" \
  --worker-listen "127.0.0.1:$((PORT + 2))" --munge-key-file "$ODYSSEY_STATE_DIR/munge/munge.key" \
  >"$WORK/bridge.log" 2>&1 &
PID=$!
trap 'kill "$PID" $IDP_PID 2>/dev/null || true; scancel --user=alice >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do curl -fsS "$API/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "$API/readyz" >/dev/null || { cat "$WORK/bridge.log" >&2; fail "the bridge did not become ready"; }

# alice signs in through PAM (a fresh random Unix password), so submissions
# reach the real cluster as alice.
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
echo "alice:$password" | chpasswd

# Logout revokes the token it is called with (and its whole login), which
# would turn every later request into a 401: it gets its own pass, with its
# own login, after everything else.
sign_in() {
  curl -fsS -X POST "$API/v1/auth/login" -H 'content-type: application/json' \
    -d "$(jq -cn --arg p "$password" '{name: "alice", password: $p, method: "pam"}')" | jq -r .access_token
}
TOKEN=$(sign_in)
cd "$WORK"
run_st() {
  "$VENV/bin/st" --config-file "$REPO/scripts/schemathesis.toml" run "$API/v1/openapi.json" --checks all \
    --max-examples "$MAX_EXAMPLES" --workers 2 --seed 8 --no-color "$@"
}
step "schemathesis $SCHEMATHESIS_VERSION: every check, $MAX_EXAMPLES examples per operation"
status=0
run_st --header "Authorization: Bearer $TOKEN" --exclude-path /v1/auth/logout || status=$?
if ((status == 0)); then
  step "schemathesis: logout, with a login of its own"
  # One operation: no links to follow, so no stateful phase.
  run_st --header "Authorization: Bearer $(sign_in)" --include-path /v1/auth/logout \
    --phases examples,coverage,fuzzing || status=$?
fi
if ((status != 0)); then
  tail -50 "$WORK/bridge.log" >&2
  fail "schemathesis found responses that do not match docs/openapi.json (exit $status)"
fi
