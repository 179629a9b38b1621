#!/usr/bin/env bash
# Vagrant's shell provisioner for every VM. The cluster itself comes from
# slurm-conf/cluster in its "vm" mode, the same script the namespace cluster
# uses; this only adds what a VM needs around it: the host's munge key, the
# Rust build on the controller, and the plugin on every node.
set -euo pipefail

REPO=${ODYSSEY_REPO:-/vagrant}
CLUSTER=$REPO/slurm-conf/cluster
STATE_DIR=${ODYSSEY_STATE_DIR:-/var/lib/odyssey-cluster}
SHARED_DIR=$STATE_DIR/shared

bash "$CLUSTER" provision --mode vm

if [[ $ODYSSEY_ROLE == controller ]]; then
  # The controller builds once for every node and publishes the results on
  # the shared filesystem (NFS from here).
  if ! command -v cargo >/dev/null && [[ ! -x $HOME/.cargo/bin/cargo ]]; then
    curl -fsSL https://sh.rustup.rs | sh -s -- -y --profile minimal
  fi
  export PATH=$HOME/.cargo/bin:$PATH
  export CARGO_TARGET_DIR=/var/lib/odyssey-build
  cargo build --release --workspace --manifest-path "$REPO/Cargo.toml"
  install -d -m 0755 "$SHARED_DIR/bin" "$SHARED_DIR/lib"
  install -m 0755 "$CARGO_TARGET_DIR/release/odyssey-mpi" "$SHARED_DIR/bin/odyssey-mpi"
  install -m 0755 "$CARGO_TARGET_DIR/release/libodyssey_spank.so" "$SHARED_DIR/lib/odyssey_spank.so"
  # Beside the .so, so that `cluster plugin install` finds and installs it.
  install -m 0755 "$CARGO_TARGET_DIR/release/odyssey-health-flush" "$SHARED_DIR/lib/odyssey-health-flush"
fi
bash "$CLUSTER" plugin install "$SHARED_DIR/lib/odyssey_spank.so" --mode vm

if [[ $ODYSSEY_ROLE == controller ]]; then
  # The bridge, its nightly backup timer, Prometheus and Alertmanager (from
  # Debian, scraping the bridge's metrics listener) as systemd services
  # (systemd/); the installer also puts the bridge binary and its PAM
  # service in place. Grafana from Grafana's own repository when it can be
  # reached (Debian does not package it), with the dashboard provisioned.
  bash "$REPO/scripts/install-services.sh" --bridge-metrics 127.0.0.1:9464
  if curl -fsS -m 10 -o /usr/share/keyrings/grafana.asc https://apt.grafana.com/gpg.key; then
    echo "deb [signed-by=/usr/share/keyrings/grafana.asc] https://apt.grafana.com stable main" \
      >/etc/apt/sources.list.d/grafana.list
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q grafana >/dev/null
    install -d -m 0755 /var/lib/grafana/dashboards/odyssey
    install -m 0644 "$REPO"/monitoring/grafana/dashboards/*.json /var/lib/grafana/dashboards/odyssey/
    install -m 0644 "$REPO/monitoring/grafana/provisioning/dashboards/cloud-odyssey.yml" /etc/grafana/provisioning/dashboards/
    install -m 0644 "$REPO/monitoring/grafana/provisioning/datasources/prometheus.yml" /etc/grafana/provisioning/datasources/
    systemctl enable --now grafana-server
  else
    echo "provision: apt.grafana.com is not reachable: no Grafana (monitoring/grafana/ has the dashboard to import)"
  fi
fi
