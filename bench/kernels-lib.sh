# shellcheck shell=bash
# Shared by bench/kernels.sh, bench/twin-variants.sh and bench/scaling.sh
# (sourced, not run): scripts/lib.sh, stats.sh, the cluster up with odyssey-mpi and
# the C twins installed, the shell in the shared scratch directory, the
# machine line each report starts with, and the helpers the three use.

# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
# shellcheck source=stats.sh
source "$(dirname "${BASH_SOURCE[0]}")/stats.sh"

bash "$CLUSTER" up >/dev/null
BIN=$SHARED_DIR/bin
[[ -x $BIN/odyssey-mpi && -x $BIN/c-twins/stream ]] || fail "odyssey-mpi or the C twins are missing: run scripts/build.sh"
command -v jq >/dev/null || fail "jq is missing: apt-get install jq"
cd "$SHARED_DIR/scratch" || fail "no shared scratch directory: $SHARED_DIR/scratch"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(rustc --version); $(mpicc --version | head -1)"

# `median values...`
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%.6g", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# `best values...`: the smallest.
best() { printf '%s\n' "$@" | sort -g | head -1; }
# `ratio a b`: a / b to three decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

# `verified_result NODES RANKS program args...`: the program's JSON result
# (its last JSON value on stdout); fails the bench unless it is a C
# program's or a verified Rust kernel's.
verified_result() {
  local json
  json=$(srun -N"$1" -n"$2" --mpi=pmix "${@:3}" 2>/dev/null | jq -sc '.[-1]')
  [[ $(jq -r '.impl // "rust"' <<<"$json") == c || $(jq .verified <<<"$json") == true ]] ||
    fail "not verified: ${*:3}: $json"
  echo "$json"
}
