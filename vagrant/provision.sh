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

if [[ $ODYSSEY_ROLE == worker ]]; then
  # The worker's way in (issue #11): odyssey-worker (built by the
  # controller, on the shared filesystem) joins with this VM's one-time
  # token through the controller's bridge, fetches the munge key and the
  # controller's address over mutual TLS, and starts slurmd -Z; then its
  # agent runs as a service. The plugin stack comes with the config slurmd
  # fetches; the plugin itself is installed like on every node, and on a
  # joined machine it leaves delivery to the agent.
  install -m 0755 "$SHARED_DIR/bin/odyssey-worker" /usr/local/sbin/odyssey-worker
  bash "$CLUSTER" plugin install "$SHARED_DIR/lib/odyssey_spank.so" --mode vm
  if [[ ! -f /var/lib/odyssey-worker/worker.json ]]; then
    /usr/local/sbin/odyssey-worker join --no-agent --bridge "http://$ODYSSEY_CONTROLLER_ADDR:8080" \
      --token "$(cat /tmp/odyssey-worker.token)" --name "$ODYSSEY_NODE_NAME" \
      --health-spool /var/spool/odyssey-health/%n
  fi
  rm -f /tmp/odyssey-worker.token
  install -m 0644 "$REPO/systemd/odyssey-worker.service" /etc/systemd/system/
  systemctl daemon-reload
  systemctl enable --now odyssey-worker.service
  exit 0
fi

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
  install -m 0755 "$CARGO_TARGET_DIR/release/odyssey-worker" "$SHARED_DIR/bin/odyssey-worker"
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
  # Workers join through this bridge: its API on the VM network (plain HTTP
  # on the private network of these VMs; give it tls_cert and tls_key
  # anywhere else) and the worker endpoint (mutual TLS) beside it.
  if [[ -n ${ODYSSEY_WORKER_NAMES:-} ]] && ! grep -q '^worker_listen' /etc/odyssey/bridge.toml; then
    sed -i "s/^listen = .*/listen = \"0.0.0.0:8080\"/" /etc/odyssey/bridge.toml
    {
      echo "worker_listen = \"$ODYSSEY_CONTROLLER_ADDR:8443\""
      echo 'munge_key_file = "/etc/munge/munge.key"'
    } >>/etc/odyssey/bridge.toml
    systemctl restart odyssey-bridge.service
  fi
  # Each worker VM's token, recorded once (the file stays the worker's).
  for token in /tmp/odyssey-worker-tokens/*.token; do
    [[ -f $token ]] || continue
    BRIDGE_CONFIG=/etc/odyssey/bridge.toml /usr/local/bin/bridge worker-token --expires-in 604800 \
      --token-file "$token" || true
    rm -f "$token"
  done
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
