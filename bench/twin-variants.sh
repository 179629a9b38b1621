#!/usr/bin/env bash
# Issue #16: each Rust kernel against its C twin and every C variant tried
# for that twin (mpi-runner/c/<kernel>.c, "// variants:" line; built by
# scripts/build.sh into c-twins/variants/), at several sizes and at 1 rank,
# 2 ranks on 2 nodes (one per node) and 2 ranks on one node. Programs run
# in a rotated order each round; medians of the wall times of the parallel
# part, as each program measures it. Prints Markdown.
#
#   bash bench/twin-variants.sh [rounds=5] [kernel...]
set -euo pipefail

ROUNDS=${1:-5}
shift || true
if (($#)); then KERNELS=("$@"); else KERNELS=(jacobi matmul cg pi); fi
# shellcheck source=kernels-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/kernels-lib.sh"

# The cases per kernel, ;-separated: 0.5 to 1.5 s of work at one rank
# (shorter runs at 2 ranks per node were mostly noise here).
declare -A CASES=(
  [jacobi]="--n 512 --max-iters 6000 --tol 1e-300;--n 1024 --max-iters 1500 --tol 1e-300;--n 2048 --max-iters 240 --tol 1e-300;--n 4096 --max-iters 60 --tol 1e-300"
  [matmul]="--n 512;--n 1024;--n 2048"
  [cg]="--n 256 --max-iters 4000 --tol 1e-300;--n 1024 --max-iters 200 --tol 1e-300"
  [pi]="--samples 100000000"
)
# nodes:ranks
PLACEMENTS=(1:1 2:2 1:2)

for kernel in "${KERNELS[@]}"; do
  [[ -n ${CASES[$kernel]:-} ]] || fail "no cases for kernel $kernel (one of: ${!CASES[*]})"
  programs=("rust" "twin")
  for v in "$BIN/c-twins/variants/$kernel"-*; do [[ -x $v ]] && programs+=("${v##*/"$kernel"-}"); done
  echo
  printf '| %s | nodes x ranks |' "$kernel"
  printf ' %s |' "${programs[@]}"
  echo " Rust / fastest C |"
  printf '|---|---|'
  printf -- '---|%.0s' "${programs[@]}"
  echo "---|"
  IFS=';' read -ra cases <<<"${CASES[$kernel]}"
  for case in "${cases[@]}"; do
    read -ra params <<<"$case"
    for placement in "${PLACEMENTS[@]}"; do
      nodes=${placement%:*} ranks=${placement#*:}
      declare -A times=()
      for ((round = 0; round < ROUNDS; round++)); do
        for ((k = 0; k < ${#programs[@]}; k++)); do
          p=${programs[$(((k + round) % ${#programs[@]}))]}
          case $p in
            rust) cmd=("$BIN/odyssey-mpi" --json "$kernel") ;;
            twin) cmd=("$BIN/c-twins/$kernel") ;;
            *) cmd=("$BIN/c-twins/variants/$kernel-$p") ;;
          esac
          times[$p]+=" $(verified_result "$nodes" "$ranks" "${cmd[@]}" "${params[@]}" | jq .wall_time_s)"
        done
      done
      # shellcheck disable=SC2016 # the backquotes are Markdown
      printf '| `%s` | %s x %s |' "$case" "$nodes" "$ranks"
      best_c=
      for p in "${programs[@]}"; do
        # shellcheck disable=SC2086 # word splitting of the time list is wanted
        m=$(median ${times[$p]})
        printf ' %.4f s |' "$m"
        if [[ $p == rust ]]; then
          rust=$m
        elif [[ -z $best_c ]] || awk -v a="$m" -v b="$best_c" 'BEGIN { exit !(a < b) }'; then
          best_c=$m
        fi
      done
      printf ' %s |\n' "$(ratio "$rust" "$best_c")"
      unset times
    done
  done
done
