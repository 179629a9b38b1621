#!/usr/bin/env bash
# Issue #16: strong scaling of each kernel, Rust and its C twin side by
# side: one problem size, 1, 2, 3 and 6 ranks over 1, 2, 3 and 3 nodes (the
# e2e tests' placements), the two programs alternating which goes first
# round by round. Each program's best of the rounds (the parallel part's
# wall time; on this shared machine a run is slowed, never sped up: see
# bench/twin-variants.sh), Rust over C per round (median and 95 %
# interval), parallel efficiency T1 / (p Tp) against each program's own
# best one-rank time, and the stencil's best bandwidth as a share of the
# best STREAM triad run at the same placement. This machine has 2 cores:
# from 3 ranks on, ranks share cores, which the table shows. Prints
# Markdown.
#
#   bash bench/scaling.sh [rounds=7] [kernel...]
set -euo pipefail

ROUNDS=${1:-7}
shift || true
if (($#)); then KERNELS=("$@"); else KERNELS=(pi jacobi matmul cg); fi
# shellcheck source=kernels-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/kernels-lib.sh"

# Sides divisible by every process grid used (1, 2, 3, 3 x 2).
declare -A PARAMS=(
  [pi]="--samples 100000000"
  [jacobi]="--n 4200 --max-iters 60 --tol 1e-300"
  [matmul]="--n 1200"
  [cg]="--n 1200 --max-iters 200 --tol 1e-300"
)
PLACEMENTS=(1:1 2:2 3:3 3:6)

calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }

declare -A TRIAD
for kernel in "${KERNELS[@]}"; do
  [[ -n ${PARAMS[$kernel]:-} ]] || fail "unknown kernel $kernel (one of: ${!PARAMS[*]})"
  read -ra params <<<"${PARAMS[$kernel]}"
  echo
  # shellcheck disable=SC2016 # the backquotes are Markdown
  printf '| %s `%s`, best of %s | Rust | C | Rust / C | Rust / C per round, median [95 %%] | Rust efficiency | C efficiency |' \
    "$kernel" "${PARAMS[$kernel]}" "$ROUNDS"
  [[ $kernel == jacobi ]] && printf ' triad | Rust stencil / triad |'
  echo
  printf '|---|---|---|---|---|---|---|'
  [[ $kernel == jacobi ]] && printf -- '---|---|'
  echo
  for placement in "${PLACEMENTS[@]}"; do
    nodes=${placement%:*} ranks=${placement#*:}
    rust=() c=() rate=()
    for ((round = 1; round <= ROUNDS; round++)); do
      run_rust() {
        local json
        json=$(verified_result "$nodes" "$ranks" "$BIN/odyssey-mpi" --json "$kernel" "${params[@]}")
        rust+=("$(jq .wall_time_s <<<"$json")") rate+=("$(jq .bandwidth_gb_s <<<"$json")")
      }
      run_c() { c+=("$(verified_result "$nodes" "$ranks" "$BIN/c-twins/$kernel" "${params[@]}" | jq .wall_time_s)"); }
      if ((round % 2)); then run_rust; run_c; else run_c; run_rust; fi
    done
    rt=$(best "${rust[@]}") ct=$(best "${c[@]}")
    [[ $ranks == 1 ]] && rust1=$rt c1=$ct
    read -r m lo hi < <(paired_ratio "${rust[*]}" "${c[*]}")
    printf '| %s ranks on %s nodes | %.4f s | %.4f s | %s | %.3f [%.3f, %.3f] | %s | %s |' "$ranks" "$nodes" "$rt" "$ct" \
      "$(ratio "$rt" "$ct")" "$m" "$lo" "$hi" "$(calc "$rust1 / ($ranks * $rt)")" "$(calc "$c1 / ($ranks * $ct)")"
    if [[ $kernel == jacobi ]]; then
      if [[ -z ${TRIAD[$placement]:-} ]]; then
        triad=()
        for ((round = 1; round <= ROUNDS; round++)); do
          triad+=("$(verified_result "$nodes" "$ranks" "$BIN/c-twins/stream" --n 20000000 --reps 10 | jq .bandwidth_gb_s)")
        done
        TRIAD[$placement]=$(printf '%s\n' "${triad[@]}" | sort -g | tail -1)
      fi
      stencil=$(printf '%s\n' "${rate[@]}" | sort -g | tail -1)
      printf ' %.2f GB/s | %s |' "${TRIAD[$placement]}" "$(ratio "$stencil" "${TRIAD[$placement]}")"
    fi
    echo
  done
done
