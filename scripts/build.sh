#!/usr/bin/env bash
# Build the workspace in release mode and install what the cluster runs:
# odyssey-mpi on the shared filesystem, the SPANK plugin into plugstack.conf.d,
# and the bridge's PAM service.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_cargo
step "building the workspace (release)"
cargo build --release --workspace --manifest-path "$REPO/Cargo.toml"

step "installing odyssey-mpi and the SPANK plugin into the cluster"
install -d -m 0755 "$SHARED_DIR/bin"
# A new file renamed over the old one, so running jobs keep a whole binary.
install -m 0755 "$REPO/target/release/odyssey-mpi" "$SHARED_DIR/bin/.odyssey-mpi.new"
mv -f "$SHARED_DIR/bin/.odyssey-mpi.new" "$SHARED_DIR/bin/odyssey-mpi"
bash "$CLUSTER" plugin install "$REPO/target/release/libodyssey_spank.so"

step "installing the bridge's PAM service (/etc/pam.d/odyssey-bridge)"
# The bridge proves Unix accounts with PAM ("method": "pam" logins). A site
# that already has this file keeps its own.
if [[ ! -f /etc/pam.d/odyssey-bridge ]]; then
  install -m 0644 "$REPO/bridge/pam.d/odyssey-bridge" /etc/pam.d/odyssey-bridge
fi

step "building the C reference twins of the kernels (mpicc -O3) for bench/kernels.sh"
install -d -m 0755 "$SHARED_DIR/bin/c-twins"
# Rebuilt from scratch: none left from renamed or dropped variants.
rm -rf "$SHARED_DIR/bin/c-twins/variants"
install -d -m 0755 "$SHARED_DIR/bin/c-twins/variants"
for source in "$REPO"/mpi-runner/c/*.c; do
  name=$(basename "$source" .c)
  mpicc -O3 -Wall -Wextra -Werror -o "$SHARED_DIR/bin/c-twins/.$name.new" "$source" -lm
  mv -f "$SHARED_DIR/bin/c-twins/.$name.new" "$SHARED_DIR/bin/c-twins/$name"
  # The variants a twin was measured against (a "// variants: a b" line;
  # each built with -DVARIANT_<A>) for bench/twin-variants.sh (issue #16).
  variants=()
  read -ra variants < <(sed -n 's|^// variants: ||p' "$source") || true # no line: none
  for variant in "${variants[@]}"; do
    out=$SHARED_DIR/bin/c-twins/variants/$name-$variant
    mpicc -O3 -Wall -Wextra -Werror "-DVARIANT_${variant^^}" -o "$out.new" "$source" -lm
    mv -f "$out.new" "$out"
  done
done
