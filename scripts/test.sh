#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine, as root: packages, build,
# the local cluster, shell and Vagrant checks, every Rust test (the e2e ones
# against the real cluster, the fuzz targets for a bounded time), then
# schemathesis against the live bridge's API description.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

step "installing packages"
bash "$CLUSTER" install shellcheck openssl jq systemd tmux chromium chromium-driver
# Vagrant only validates the Vagrantfile here; without recommends it stays
# small (cluster-notes.md, "Vagrant and shell checks offline").
if ! command -v vagrant >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends vagrant >/dev/null
fi

# The OIDC tests' identity provider (issue #15) is oidc-provider from npm,
# run by Node: Debian's nodejs and npm unless a Node is already installed.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  bash "$CLUSTER" install nodejs npm
fi
step "installing the test identity provider's packages (npm ci, from package-lock.json)"
npm ci --prefix "$REPO/tests/oidc-idp" --no-audit --no-fund --loglevel=error

step "bringing the cluster up"
bash "$CLUSTER" up
bash "$REPO/scripts/build.sh"

step "lint: rustfmt, clippy, ShellCheck, the Vagrantfile"
bash "$REPO/scripts/lint.sh"

step "monitoring: promtool checks the Prometheus config and the alert rules, and runs their unit tests"
bash "$REPO/slurm-conf/monitoring" check

step "running the tests (submissions through libslurm)"
ensure_cargo
cd "$REPO"
BRIDGE_SUBMIT_VIA=libslurm cargo test --release --workspace -- --test-threads="${ODYSSEY_TEST_THREADS:-4}"

# Every end-to-end test again with the other submission path (issue #9):
# the attack suite, crash recovery and the job lifecycle hold on both.
step "running the end-to-end tests again (submissions through sbatch)"
BRIDGE_SUBMIT_VIA=sbatch cargo test --release -p e2e -- --test-threads="${ODYSSEY_TEST_THREADS:-4}"

step "checking the live API against docs/openapi.json (schemathesis)"
bash "$REPO/scripts/api-check.sh"
step "all tests passed"
