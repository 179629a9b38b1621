# Shared by scripts/*.sh: paths, logging and the Rust toolchain. Source it.
# shellcheck shell=bash disable=SC2034 # the variables are for the scripts that source this

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER=$REPO/slurm-conf/cluster
export ODYSSEY_STATE_DIR=${ODYSSEY_STATE_DIR:-/var/lib/odyssey-cluster}
export SLURM_CONF=$ODYSSEY_STATE_DIR/etc/slurm.conf
SHARED_DIR=$ODYSSEY_STATE_DIR/shared

step() { printf '\n==> %s\n' "$*" >&2; }
fail() { echo "${0##*/}: $*" >&2; exit 1; }

# The machine's rustup toolchain; Debian's rustc is far too old for the
# workspace (cluster-notes.md, "Rust crates against these versions").
ensure_cargo() {
  if ! command -v cargo >/dev/null 2>&1 && [[ -f $HOME/.cargo/env ]]; then
    # shellcheck disable=SC1091
    source "$HOME/.cargo/env"
  fi
  command -v cargo >/dev/null 2>&1 \
    || fail "cargo not found: install Rust with rustup (https://rustup.rs) and retry"
}

((EUID == 0)) || fail "needs root: the cluster's daemons, namespaces and test accounts are system-wide (try: sudo bash $0)"
