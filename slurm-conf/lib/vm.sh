# shellcheck shell=bash disable=SC2034 # paths set here are read by the other parts
# VM nodes (--mode vm): every node is a machine of its own with the system's
# munged, slurmctld and slurmd (systemd) and an NFS shared filesystem;
# vagrant/provision.sh runs `cluster provision --mode vm` on each. Sourced by
# slurm-conf/cluster.

# On VMs the daemons are the system's, so the config lives where they look.
mode_paths() {
  ETC_DIR=/etc/slurm
  MUNGE_SOCKET=/run/munge/munge.socket.2
  NET_PREFIX_VM=${VM_CONTROLLER_ADDR%.*}
}

controller_host() { echo "$VM_CONTROLLER_NAME"; }
controller_addr() { echo "$VM_CONTROLLER_ADDR"; }
# The system munged's default socket: nothing to say.
auth_info() { :; }

# Where each node spools health records: the machine's own /var/spool.
plugin_spool() { echo "/var/spool/odyssey-health/%n"; }

# The health plugin's delivery agent: a systemd service on each compute
# VM, for the VM's own node (its short host name).
agent_lock() { echo "/run/odyssey-health-agent-%n.lock"; }

start_health_agents() {
  [[ $VM_ROLE == compute ]] || return 0
  local args
  mapfile -t args < <(health_agent_args "$(hostname -s)")
  ((${#args[@]})) || return 0
  cat >/etc/systemd/system/odyssey-health-agent.service <<UNIT
[Unit]
Description=Cloud Odyssey health records: this node's spool to the bridge
After=network-online.target slurmd.service
Wants=network-online.target

[Service]
ExecStart=${args[*]}
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
UNIT
  systemctl daemon-reload
  systemctl enable --now odyssey-health-agent.service >/dev/null
}

stop_health_agents() {
  [[ -f /etc/systemd/system/odyssey-health-agent.service ]] || return 0
  systemctl disable --now odyssey-health-agent.service >/dev/null 2>&1 || true
  rm -f /etc/systemd/system/odyssey-health-agent.service
}

# One line per VM named in ODYSSEY_VM_NODES.
node_lines() {
  local entry entries
  IFS=, read -ra entries <<<"$VM_NODES"
  for entry in "${entries[@]}"; do
    echo "NodeName=${entry%%=*} NodeAddr=${entry#*=} CPUs=$VM_CPUS RealMemory=$VM_MEM_MB State=UNKNOWN$(spare_attrs "${entry%%=*}")"
  done
}

# The system's munged (systemd), with the key the host gave every VM.
start_munge() {
  systemctl enable --now munge >/dev/null
}

# The system's slurmctld (systemd), restarted with the rendered config.
start_slurmctld() {
  systemctl enable slurmctld >/dev/null
  systemctl restart slurmctld
}

# vm mode: one VM's part of the cluster. Every VM gets the same munge key
# from the host (ODYSSEY_MUNGE_KEY); the controller exports the shared
# filesystem over NFS and compute nodes mount it.
cmd_provision() {
  need_root provision
  [[ -n $VM_ROLE && -n $VM_CONTROLLER_NAME && -n $VM_CONTROLLER_ADDR && -n $VM_NODES ]] \
    || die "provision needs ODYSSEY_ROLE, ODYSSEY_CONTROLLER_NAME, ODYSSEY_CONTROLLER_ADDR and ODYSSEY_VM_NODES"
  [[ $VM_ROLE == controller || $VM_ROLE == compute || $VM_ROLE == worker ]] \
    || die "ODYSSEY_ROLE must be controller, compute or worker, not '$VM_ROLE'"
  # A worker joins with odyssey-worker, which fetches the munge key and the
  # configuration (vagrant/provision.sh): it gets neither here.
  [[ $VM_ROLE == worker || -s $VM_MUNGE_KEY ]] || die "no munge key at '$VM_MUNGE_KEY' (set ODYSSEY_MUNGE_KEY)"
  if [[ $VM_ROLE == controller ]]; then cmd_install nfs-common nfs-kernel-server
  else cmd_install nfs-common; fi
  # Every VM resolves every other by name.
  local entry
  IFS=, read -ra entries <<<"$VM_NODES"
  for entry in "$VM_CONTROLLER_NAME=$VM_CONTROLLER_ADDR" "${entries[@]}"; do
    grep -qE "^${entry#*=}[[:space:]]" /etc/hosts || echo "${entry#*=} ${entry%%=*}" >>/etc/hosts
  done
  make_dirs
  ensure_users
  if [[ $VM_ROLE == worker ]]; then
    # The packages' own munged (with the key the package made) and slurmd
    # (without a slurm.conf) stay off: the worker agent runs both.
    systemctl disable --now slurmd munge >/dev/null 2>&1 || true
    grep -q " $SHARED_DIR nfs " /etc/fstab \
      || echo "$VM_CONTROLLER_ADDR:$SHARED_DIR $SHARED_DIR nfs defaults,_netdev 0 0" >>/etc/fstab
    mountpoint -q "$SHARED_DIR" || mount "$SHARED_DIR"
    say "worker $(hostname -s) prepared (it joins with odyssey-worker)"
    return
  fi
  install -m 0400 -o munge -g munge "$VM_MUNGE_KEY" /etc/munge/munge.key
  systemctl enable munge >/dev/null
  systemctl restart munge
  render_config || true
  if [[ $VM_ROLE == controller ]]; then
    grep -q "^$SHARED_DIR " /etc/exports 2>/dev/null \
      || echo "$SHARED_DIR $NET_PREFIX_VM.0/24(rw,sync,no_subtree_check,no_root_squash)" >>/etc/exports
    exportfs -ra
    start_slurmctld 1
    wait_ctld
  else
    grep -q " $SHARED_DIR nfs " /etc/fstab \
      || echo "$VM_CONTROLLER_ADDR:$SHARED_DIR $SHARED_DIR nfs defaults,_netdev 0 0" >>/etc/fstab
    mountpoint -q "$SHARED_DIR" || mount "$SHARED_DIR"
    systemctl enable slurmd >/dev/null
    systemctl restart slurmd
    local name=${ODYSSEY_NODE_NAME:-$(hostname -s)} deadline=$((SECONDS + UP_TIMEOUT))
    scontrol update nodename="$name" state=resume 2>/dev/null || true
    until sinfo -h -n "$name" -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)-?$'; do
      ((SECONDS < deadline)) || { journalctl -u slurmd -n 20 >&2 || true; die "$name is not idle after ${UP_TIMEOUT}s"; }
      sleep 1
    done
  fi
  say "$VM_ROLE $(hostname -s) provisioned"
}
