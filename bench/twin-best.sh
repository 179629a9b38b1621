#!/usr/bin/env bash
# Issue #16: every run bench/twin-variants.sh kept (its TSVs in the
# cluster's log directory), pooled: for each kernel, case and placement,
# Rust's best time and the best of any C program, over every run given.
# Pool only runs of the same code. On a shared machine the noise only slows
# a run, so the more runs pooled, the closer each best is to the program's
# own speed.
#
#   bash bench/twin-best.sh /var/lib/odyssey-cluster/log/twin-variants-*.tsv
set -euo pipefail
(($#)) || { echo "usage: $0 TWIN-VARIANTS-TSV..." >&2; exit 2; }
echo "| kernel | case | nodes x ranks | Rust runs | best Rust | C runs | best C (program) | Rust / C, best of each |"
echo "|---|---|---|---|---|---|---|---|"
# Columns: kernel, case, placement, stage, round, program, seconds.
awk -F'\t' '
  FNR == 1 { next }
  {
    key = $1 "\t" $2 "\t" $3
    if (!(key in seen)) { seen[key] = 1; order[++n] = key }
    if ($6 == "rust") {
      rust_runs[key]++
      if (!(key in rust) || $7 < rust[key]) rust[key] = $7
    } else {
      c_runs[key]++
      if (!(key in c) || $7 < c[key]) { c[key] = $7; c_prog[key] = $6 }
    }
  }
  END {
    for (i = 1; i <= n; i++) {
      k = order[i]; split(k, f, "\t")
      printf "| %s | `%s` | %s | %d | %.4f s | %d | %.4f s (%s) | %.3f |\n", f[1], f[2], f[3], rust_runs[k], rust[k], c_runs[k], c[k], c_prog[k], rust[k] / c[k]
    }
  }' "$@"
