#!/usr/bin/env bash
# Lint: rustfmt and clippy (warnings are errors) over all the workspace's code,
# ShellCheck over every shell script in the repo, and `vagrant validate`.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

if ! command -v cargo >/dev/null 2>&1 && [[ -f $HOME/.cargo/env ]]; then
  # shellcheck disable=SC1091
  source "$HOME/.cargo/env"
fi
echo "cargo fmt --check" >&2
cargo fmt --all -- --check
# Every target: libraries, binaries, tests and benches.
echo "cargo clippy --all-targets -D warnings" >&2
cargo clippy --release --workspace --all-targets --quiet -- -D warnings

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
