# shellcheck shell=bash
# Statistics the benches share (sourced, not run).

# `values | sign_interval`: the median of the numbers on stdin (one per
# line) and its 95 % confidence interval from order statistics (the sign
# test's: no assumption about the noise's shape), as "median low high".
# Fed per-round paired values (one program's time over another's in the
# same round), it cancels the machine's drift between rounds, which a
# ratio of two medians does not.
sign_interval() {
  sort -g | awk '{ v[NR] = $1 } END {
    n = NR; if (n == 0) exit 1
    m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    half = 0.98 * sqrt(n); lo = int(n / 2 - half); hi = int(n / 2 + 1 + half + 0.999)
    if (lo < 1) lo = 1; if (hi > n) hi = n
    print m, v[lo], v[hi] }'
}

# `paired_ratio "A's times" "B's times"`: A's time over B's round by round
# (two space-separated lists in the same round order), as sign_interval
# gives it: "median low high".
paired_ratio() {
  paste <(tr ' ' '\n' <<<"$1" | grep .) <(tr ' ' '\n' <<<"$2" | grep .) | awk '{ print $1 / $2 }' | sign_interval
}
