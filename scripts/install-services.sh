#!/usr/bin/env bash
# Installs Cloud Odyssey's services on the controller: the bridge binary,
# the systemd units in systemd/ (the bridge, its nightly backup timer,
# Prometheus and Alertmanager), /etc/odyssey/bridge.toml if there is none,
# the PAM service, and the monitoring configuration. Where systemd runs (the
# Vagrant controller) it enables and starts them; elsewhere it installs and
# says so. Idempotent; an existing bridge.toml is never overwritten.
#
#   scripts/install-services.sh [--bridge-metrics HOST:PORT]
#
# Environment: CARGO_TARGET_DIR (default <repo>/target; build first with
# scripts/build.sh), ODYSSEY_STATE_DIR (the cluster's state directory).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
METRICS=127.0.0.1:9464

say() { echo "install-services: $*"; }
die() {
  echo "install-services: $*" >&2
  exit 1
}

while (($#)); do
  case $1 in
    --bridge-metrics) METRICS=${2:?--bridge-metrics needs HOST:PORT}; shift 2 ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see: $0 --help)" ;;
  esac
done
((EUID == 0)) || die "needs root"
[[ -x $TARGET/release/bridge ]] || die "$TARGET/release/bridge is missing: run scripts/build.sh first"

install -m 0755 "$TARGET/release/bridge" /usr/local/bin/bridge
install -d -m 0755 /etc/odyssey
if [[ ! -f /etc/odyssey/bridge.toml ]]; then
  install -m 0600 "$REPO/systemd/bridge.toml" /etc/odyssey/bridge.toml
  say "wrote /etc/odyssey/bridge.toml (edit it, then: systemctl restart odyssey-bridge)"
fi
[[ -f /etc/pam.d/odyssey-bridge ]] || install -m 0644 "$REPO/bridge/pam.d/odyssey-bridge" /etc/pam.d/odyssey-bridge
install -d -m 0700 /var/backups/odyssey-bridge
install -m 0644 "$REPO"/systemd/*.service "$REPO"/systemd/*.timer /etc/systemd/system/
bash "$REPO/slurm-conf/monitoring" render --bridge-metrics "$METRICS"

units=(odyssey-prometheus.service odyssey-alertmanager.service odyssey-bridge.service odyssey-bridge-backup.timer)
if [[ -d /run/systemd/system ]]; then
  systemctl daemon-reload
  # Debian's own Prometheus units would take the same ports.
  systemctl disable --now prometheus.service prometheus-alertmanager.service 2>/dev/null || true
  systemctl enable --now "${units[@]}"
  systemctl reload-or-restart odyssey-prometheus.service odyssey-alertmanager.service
  say "running: ${units[*]} (systemctl status odyssey-bridge; journalctl -u odyssey-bridge)"
else
  say "systemd is not running here: units installed in /etc/systemd/system, not started"
fi
