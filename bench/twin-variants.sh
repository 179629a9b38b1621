#!/usr/bin/env bash
# Issue #16: each Rust kernel against its C twin and every C variant tried
# for that twin (mpi-runner/c/<kernel>.c, "// variants:" line; built by
# scripts/build.sh into c-twins/variants/), at several sizes and at 1 rank,
# 2 ranks on 2 nodes (one per node) and 2 ranks on one node. Prints Markdown.
#
# Two stages per row, each time the parallel part's wall time as the
# program measures it. First every program, in a rotated order each round:
# the best of ROUNDS for each (the fastest C is the one with the lowest),
# and the medians' ratio. Then Rust head to head with that C alone,
# alternating which goes first, HEAD_ROUNDS rounds (default 11): Rust's
# time over C's in the same round, median and 95 % interval, and the ratio
# of the two best times, which is the verdict. On this shared VM the noise
# is one-sided (a run is slowed by the machine, never sped up; a
# compute-only pi run takes 0.31 to 0.52 s), so the best of several runs is
# each program's own speed, as STREAM reports its best of 10. The first
# stage picks the fastest of several noisy programs, which favours C by
# chance alone (the twin and `rows` are the same code at some placements);
# the second measures the pick afresh. Every time goes to a TSV in the
# cluster's log directory.
#
#   bash bench/twin-variants.sh [rounds=5] [kernel...]
#   HEAD_ROUNDS=21 bash bench/twin-variants.sh 5 jacobi
set -euo pipefail

ROUNDS=${1:-5}
HEAD_ROUNDS=${HEAD_ROUNDS:-11}
shift || true
if (($#)); then KERNELS=("$@"); else KERNELS=(jacobi matmul cg pi); fi
# shellcheck source=kernels-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/kernels-lib.sh"

# The cases per kernel, ;-separated: 0.5 to 1.5 s of work at one rank
# (shorter runs at 2 ranks per node were mostly noise here). jacobi's last
# measures the change on every iteration (one sweep per exchange).
declare -A CASES=(
  [jacobi]="--n 512 --max-iters 6000 --tol 1e-300;--n 1024 --max-iters 1500 --tol 1e-300;--n 2048 --max-iters 240 --tol 1e-300;--n 4096 --max-iters 60 --tol 1e-300;--n 1024 --max-iters 1000 --check-every 1 --tol 1e-300"
  [matmul]="--n 512;--n 1024;--n 2048"
  [cg]="--n 256 --max-iters 4000 --tol 1e-300;--n 1024 --max-iters 200 --tol 1e-300"
  [pi]="--samples 100000000"
)
# nodes:ranks
PLACEMENTS=(1:1 2:2 1:2)

RAW=$ODYSSEY_STATE_DIR/log/twin-variants-$(date +%Y%m%dT%H%M%S).tsv
echo -e "kernel\tcase\tplacement\tstage\tround\tprogram\tseconds" >"$RAW"

# `timed KERNEL PROGRAM NODES RANKS params...`: one run's wall time of
# the parallel part (Rust's verified).
timed() {
  local cmd
  case $2 in
    rust) cmd=("$BIN/odyssey-mpi" --json "$1") ;;
    twin) cmd=("$BIN/c-twins/$1") ;;
    *) cmd=("$BIN/c-twins/variants/$1-$2") ;;
  esac
  verified_result "$3" "$4" "${cmd[@]}" "${@:5}" | jq .wall_time_s
}

echo "each program's column: its best of $ROUNDS; head to head: $HEAD_ROUNDS rounds"
for kernel in "${KERNELS[@]}"; do
  [[ -n ${CASES[$kernel]:-} ]] || fail "no cases for kernel $kernel (one of: ${!CASES[*]})"
  programs=("rust" "twin")
  for v in "$BIN/c-twins/variants/$kernel"-*; do [[ -x $v ]] && programs+=("${v##*/"$kernel"-}"); done
  echo
  printf '| %s | nodes x ranks |' "$kernel"
  printf ' %s |' "${programs[@]}"
  echo " Rust / fastest C, medians | head to head with | Rust / C per round, median [95 %] | Rust / C, best of each |"
  printf '|---|---|'
  printf -- '---|%.0s' "${programs[@]}"
  echo "---|---|---|---|"
  IFS=';' read -ra cases <<<"${CASES[$kernel]}"
  for case in "${cases[@]}"; do
    read -ra params <<<"$case"
    for placement in "${PLACEMENTS[@]}"; do
      nodes=${placement%:*} ranks=${placement#*:}
      declare -A times=()
      for ((round = 0; round < ROUNDS; round++)); do
        for ((k = 0; k < ${#programs[@]}; k++)); do
          p=${programs[$(((k + round) % ${#programs[@]}))]}
          t=$(timed "$kernel" "$p" "$nodes" "$ranks" "${params[@]}")
          times[$p]+=" $t"
          echo -e "$kernel\t$case\t$nodes x $ranks\tall\t$round\t$p\t$t" >>"$RAW"
        done
      done
      # shellcheck disable=SC2016 # the backquotes are Markdown
      printf '| `%s` | %s x %s |' "$case" "$nodes" "$ranks"
      best_c='' fastest='' median_c=''
      for p in "${programs[@]}"; do
        # shellcheck disable=SC2086 # word splitting of the time list is wanted
        b=$(best ${times[$p]}) m=$(median ${times[$p]})
        printf ' %.4f s |' "$b"
        if [[ $p == rust ]]; then
          rust=$m
        elif [[ -z $best_c ]] || awk -v a="$b" -v b="$best_c" 'BEGIN { exit !(a < b) }'; then
          best_c=$b fastest=$p median_c=$m
        fi
      done
      printf ' %s |' "$(ratio "$rust" "$median_c")"
      # Head to head: Rust and the fastest C, each first every other round.
      rust_times=() c_times=()
      for ((round = 0; round < HEAD_ROUNDS; round++)); do
        pair=(rust "$fastest")
        ((round % 2)) && pair=("$fastest" rust)
        for p in "${pair[@]}"; do
          t=$(timed "$kernel" "$p" "$nodes" "$ranks" "${params[@]}")
          if [[ $p == rust ]]; then rust_times+=("$t"); else c_times+=("$t"); fi
          echo -e "$kernel\t$case\t$nodes x $ranks\thead\t$round\t$p\t$t" >>"$RAW"
        done
      done
      read -r m lo hi < <(paired_ratio "${rust_times[*]}" "${c_times[*]}")
      printf ' %s | %.3f [%.3f, %.3f] | %s |\n' "$fastest" "$m" "$lo" "$hi" \
        "$(ratio "$(best "${rust_times[@]}")" "$(best "${c_times[@]}")")"
      unset times
    done
  done
done
echo
echo "every time: $RAW"
