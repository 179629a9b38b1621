#!/usr/bin/env bash
# The MPI kernels (issue #5) against their C twins (mpi-runner/c/, mpicc -O3),
# side by side in one run on the local cluster: the same parameters, one rank
# per node at 1 and 2 ranks (this machine has 2 cores; larger runs are the
# e2e tests' correctness runs), Rust and C alternating round by round. Also
# the ping-pong against the C ping-pong, and the stencil's memory bandwidth
# against a STREAM triad measured in the same run. Prints Markdown.
#
#   bash bench/kernels.sh [rounds=5]
set -euo pipefail

ROUNDS=${1:-5}
# shellcheck source=kernels-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/kernels-lib.sh"

declare -A PARAMS=(
  [pi]="--samples 100000000"
  [jacobi]="--n 4096 --max-iters 60"
  [matmul]="--n 1024"
  [cg]="--n 1024 --max-iters 200 --tol 1e-300"
)
declare -A METRIC=([pi]=gflop_s [jacobi]=bandwidth_gb_s [matmul]=gflop_s [cg]=gflop_s)
declare -A UNIT=([gflop_s]=GFLOP/s [bandwidth_gb_s]=GB/s)
KERNELS=(pi jacobi matmul cg)

# One rank per node: `on RANKS program args...`; stdout.
on() { srun -N"$1" -n"$1" --mpi=pmix "${@:2}" 2>/dev/null; }

echo
echo "| kernel | ranks | Rust median | C median | Rust / C time | Rust rate | C rate | verified |"
echo "|---|---|---|---|---|---|---|---|"
declare -A RATE
for ranks in 1 2; do
  for kernel in "${KERNELS[@]}"; do
    read -ra params <<<"${PARAMS[$kernel]}"
    metric=${METRIC[$kernel]}
    rust_t=() c_t=() rust_r=() c_r=() verified=true
    for ((round = 1; round <= ROUNDS; round++)); do
      run_rust() {
        local json
        json=$(on "$ranks" "$BIN/odyssey-mpi" --json "$kernel" "${params[@]}")
        rust_t+=("$(jq .wall_time_s <<<"$json")") rust_r+=("$(jq ".$metric" <<<"$json")")
        [[ $(jq .verified <<<"$json") == true ]] || verified=false
      }
      run_c() {
        local json
        json=$(on "$ranks" "$BIN/c-twins/$kernel" "${params[@]}")
        c_t+=("$(jq .wall_time_s <<<"$json")") c_r+=("$(jq ".$metric" <<<"$json")")
      }
      if ((round % 2)); then run_rust; run_c; else run_c; run_rust; fi
    done
    rt=$(median "${rust_t[@]}") ct=$(median "${c_t[@]}")
    RATE[$kernel.$ranks]=$(median "${rust_r[@]}")
    unit=${UNIT[$metric]}
    # shellcheck disable=SC2016 # the backquotes are Markdown
    printf '| %s `%s` | %s | %.4f s | %.4f s | %s | %.3f %s | %.3f %s | %s |\n' "$kernel" "${PARAMS[$kernel]}" \
      "$ranks" "$rt" "$ct" "$(ratio "$rt" "$ct")" "${RATE[$kernel.$ranks]}" "$unit" "$(median "${c_r[@]}")" \
      "$unit" "$verified"
  done
done

echo
echo "| ping-pong, 2 ranks on 2 nodes | Rust (osu) median | C median | Rust / C |"
echo "|---|---|---|---|"
lat_r=() lat_c=() bw_r=() bw_c=()
for ((round = 1; round <= ROUNDS; round++)); do
  json=$(on 2 "$BIN/odyssey-mpi" --json osu --max-bytes 4194304 --iters 1000)
  lat_r+=("$(jq '.details.pingpong.sizes[] | select(.bytes == 8) | .latency_us' <<<"$json")")
  bw_r+=("$(jq '.details.pingpong.sizes[] | select(.bytes == 4194304) | .bandwidth_mb_s' <<<"$json")")
  lines=$(on 2 "$BIN/c-twins/pingpong" --max-bytes 4194304 --iters 1000)
  lat_c+=("$(jq -s '.[] | select(.bytes == 8) | .latency_us' <<<"$lines")")
  bw_c+=("$(jq -s '.[] | select(.bytes == 4194304) | .bandwidth_mb_s' <<<"$lines")")
done
printf '| latency, 8 B | %.2f us | %.2f us | %s |\n' "$(median "${lat_r[@]}")" "$(median "${lat_c[@]}")" \
  "$(ratio "$(median "${lat_r[@]}")" "$(median "${lat_c[@]}")")"
printf '| bandwidth, 4 MiB | %.0f MB/s | %.0f MB/s | %s |\n' "$(median "${bw_r[@]}")" "$(median "${bw_c[@]}")" \
  "$(ratio "$(median "${bw_r[@]}")" "$(median "${bw_c[@]}")")"

echo
echo "| ranks | STREAM triad (C, best of 10, median of $ROUNDS) | Jacobi stencil (Rust) | stencil / triad |"
echo "|---|---|---|---|"
for ranks in 1 2; do
  triad=()
  for ((round = 1; round <= ROUNDS; round++)); do
    triad+=("$(on "$ranks" "$BIN/c-twins/stream" --n 20000000 --reps 10 | jq .bandwidth_gb_s)")
  done
  t=$(median "${triad[@]}")
  printf '| %s | %.2f GB/s | %.2f GB/s | %s |\n' "$ranks" "$t" "${RATE[jacobi.$ranks]}" "$(ratio "${RATE[jacobi.$ranks]}" "$t")"
done
