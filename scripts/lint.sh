#!/usr/bin/env bash
# Lint: ShellCheck over every shell script in the repo, and `vagrant validate`.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

# Every tracked file that is a shell script by name or by its #! line.
mapfile -t scripts < <(git ls-files | while read -r f; do
  [[ -f $f ]] || continue
  if [[ $f == *.sh ]] || head -n1 "$f" | grep -qE '^#!.*\b(ba)?sh\b'; then echo "$f"; fi
done)
echo "shellcheck: ${#scripts[@]} scripts" >&2
shellcheck "${scripts[@]}"

echo "vagrant validate" >&2
# No VM provider runs here; --ignore-provider still checks the config,
# the provisioner paths and the Ruby.
(cd vagrant && VAGRANT_CHECKPOINT_DISABLE=1 vagrant validate --ignore-provider)
