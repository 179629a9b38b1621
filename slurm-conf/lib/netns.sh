# shellcheck shell=bash
# Namespace nodes (--mode netns, the default): every node is a slurmd in its
# own network namespace on this machine, with its own address, hostname,
# /tmp and /dev/shm (cluster-notes.md, "Several nodes on one machine"), and
# a munged of the cluster's own. Sourced by slurm-conf/cluster.

mode_paths() { :; }

node_name() { echo "c$1"; }

node_addr() { echo "$NET_PREFIX.$((10 + $1))"; }

node_ns() { echo "$NS_PREFIX$(node_name "$1")"; }

controller_host() { hostname -s; }
controller_addr() { echo "$NET_PREFIX.1"; }
auth_info() { echo "AuthInfo=socket=$MUNGE_SOCKET"; }

# Where each node spools health records: its own directory here.
plugin_spool() { echo "$STATE_DIR/nodes/%n/health-spool"; }

# One line per namespace node. Every namespace node sees the whole machine;
# each gets an equal share of memory so that jobs' --mem requests mean
# something.
node_lines() {
  local i cpus mem
  cpus=$(nproc)
  mem=$(awk -v n="$N_NODES" '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 / n }' /proc/meminfo)
  for ((i = 1; i <= N_NODES; i++)); do
    echo "NodeName=$(node_name "$i") NodeAddr=$(node_addr "$i") CPUs=$cpus RealMemory=$mem State=UNKNOWN$(spare_attrs "$(node_name "$i")")"
  done
}

# ---------------------------------------------------------------- munge
start_munge() {
  install -d -m 0755 -o munge -g munge "$MUNGE_DIR" "$MUNGE_DIR/run"
  if [[ ! -s $MUNGE_DIR/munge.key ]]; then
    mungekey --create --keyfile="$MUNGE_DIR/munge.key.new" >/dev/null
    chown munge:munge "$MUNGE_DIR/munge.key.new"
    chmod 0600 "$MUNGE_DIR/munge.key.new"
    mv "$MUNGE_DIR/munge.key.new" "$MUNGE_DIR/munge.key"
  fi
  if pid_alive "$MUNGE_DIR/run/munged.pid" munged >/dev/null \
    && munge -S "$MUNGE_SOCKET" -n 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1; then
    return
  fi
  # munged keeps its pid file in its own directory (it checks who may write there).
  local pid
  if pid=$(pid_alive "$MUNGE_DIR/run/munged.pid" munged); then stop_pids "$pid"; fi
  rm -f "$MUNGE_DIR/run/munged.pid" "$MUNGE_SOCKET"
  runuser -u munge -- /usr/sbin/munged \
    --key-file="$MUNGE_DIR/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$MUNGE_DIR/run/munged.pid" --log-file="$MUNGE_DIR/munged.log" \
    --seed-file="$MUNGE_DIR/munged.seed" \
    || { tail -n 20 "$MUNGE_DIR/munged.log" >&2 || true; die "munged did not start"; }
  # munged checks who may write where it logs, so its log stays in its own
  # directory; the link lets `cluster logs` show it with the others.
  ln -sfn "$MUNGE_DIR/munged.log" "$LOG_DIR/munged.log"
  munge -S "$MUNGE_SOCKET" -n | unmunge -S "$MUNGE_SOCKET" >/dev/null \
    || die "munged runs but a credential does not round-trip (see $LOG_DIR/munged.log)"
}

# ---------------------------------------------------------------- network
ensure_bridge() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr replace "$NET_PREFIX.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}

# A namespace file whose namespace is gone (a crash between `ip netns add`
# and its bind mount, or a reboot) is not a mount point: delete and redo it.
ns_usable() { mountpoint -q "/run/netns/$1" 2>/dev/null; }

ensure_node_net() { # <index>
  ensure_net "$(node_ns "$1")" "$VETH_PREFIX$(node_name "$1")" "$(node_addr "$1")"
}

ensure_net() { # <namespace> <veth> <address>: a machine's network
  local ns=$1 veth=$2 addr=$3
  if [[ -e /run/netns/$ns ]] && ! ns_usable "$ns"; then
    ip netns delete "$ns" 2>/dev/null || rm -f "/run/netns/$ns"
  fi
  [[ -e /run/netns/$ns ]] || ip netns add "$ns"
  # The veth pair must join this namespace's eth0 to our bridge; anything
  # else (a half-made pair, a peer lost with an old namespace) is rebuilt.
  if ! ip -n "$ns" link show eth0 >/dev/null 2>&1 \
    || ! ip link show "$veth" 2>/dev/null | grep -q "master $BRIDGE"; then
    ip link delete "$veth" 2>/dev/null || true
    ip -n "$ns" link delete eth0 2>/dev/null || true
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$BRIDGE"
  fi
  ip link set "$veth" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr replace "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
  # The default route lets a node reach srun's listening ports on whatever
  # address of this machine srun advertises.
  ip -n "$ns" route replace default via "$NET_PREFIX.1"
}

# Namespaces of ours beyond the wanted count (an earlier `up --nodes 5`).
stale_node_namespaces() {
  local ns idx
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    [[ $ns == "${NS_PREFIX}"c* ]] || continue
    idx=${ns#"${NS_PREFIX}"c}
    [[ $idx =~ ^[0-9]+$ ]] || continue
    ((idx > N_NODES)) && echo "$idx"
  done
}

remove_node() { # <index>: stop everything in the node's namespace, then the namespace
  local ns name pid pids
  ns=$(node_ns "$1") name=$(node_name "$1")
  if [[ -e /run/netns/$ns ]]; then
    mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
    stop_pids "${pids[@]}"
  fi
  if pid=$(pid_alive "$RUN_DIR/slurmd-$name.pid" slurmd); then stop_pids "$pid"; fi
  rm -f "$RUN_DIR/slurmd-$name.pid"
  ip link delete "$VETH_PREFIX$name" 2>/dev/null || true
  if [[ -e /run/netns/$ns ]]; then
    ip netns delete "$ns" 2>/dev/null || { umount "/run/netns/$ns" 2>/dev/null; rm -f "/run/netns/$ns"; }
  fi
}

# ---------------------------------------------------------------- daemons
start_slurmctld() { # <restart: 0|1>
  local pid
  if pid=$(pid_alive "$RUN_DIR/slurmctld.pid" slurmctld); then
    if (($1 == 0)) && scontrol ping >/dev/null 2>&1; then return; fi
    stop_pids "$pid"
  fi
  rm -f "$RUN_DIR/slurmctld.pid"
  # -i: start even if state files from a crashed run are damaged.
  slurmctld -i || { log_tail slurmctld.log; die "slurmctld did not start"; }
}

start_slurmd() { # <index> <restart: 0|1>
  local name ns pid tmp
  name=$(node_name "$1") ns=$(node_ns "$1")
  if pid=$(pid_alive "$RUN_DIR/slurmd-$name.pid" slurmd); then
    (($2 == 0)) && return
    stop_pids "$pid"
  fi
  rm -f "$RUN_DIR/slurmd-$name.pid"
  tmp=$STATE_DIR/nodes/$name/tmp
  install -d -m 0755 "$STATE_DIR/nodes/$name" "$STATE_DIR/nodes/$name/spool"
  install -d -m 1777 "$tmp"
  # nsenter rather than `ip netns exec`, which remounts /sys and so hides the
  # cgroup mounts slurmd needs. A private mount and UTS namespace gives the
  # node its own hostname, /tmp (PMIx) and /dev/shm (OpenMPI shared memory);
  # cluster-notes.md, "Several nodes on one machine".
  # shellcheck disable=SC2016 # $1 and $2 are the inner shell's arguments
  nsenter --net="/run/netns/$ns" -- unshare --mount --uts --propagation private -- \
    /bin/sh -ec 'hostname "$1"; mount --bind "$2" /tmp; mount -t tmpfs -o mode=1777 tmpfs /dev/shm; exec slurmd -N "$1"' \
    slurmd-node "$name" "$tmp" \
    || { log_tail "slurmd-$name.log"; die "slurmd for $name did not start"; }
}

# The health plugin's delivery agent of each node: odyssey-health-flush
# --watch in the node's network namespace (its address toward the bridge,
# as on a real node), started when the plugin is installed and by `up`;
# `down` stops it with the rest of the namespace.
agent_lock() { echo "$RUN_DIR/health-agent-%n.lock"; }

start_health_agents() {
  local i name ns args
  for ((i = 1; i <= N_NODES; i++)); do
    name=$(node_name "$i") ns=$(node_ns "$i")
    pid_alive "$RUN_DIR/health-agent-$name.pid" odyssey-health- >/dev/null && continue
    ns_usable "$ns" || continue
    mapfile -t args < <(health_agent_args "$name")
    ((${#args[@]})) || return 0
    nsenter --net="/run/netns/$ns" -- setsid "${args[@]}" </dev/null >>"$LOG_DIR/health-agent-$name.log" 2>&1 &
    echo $! >"$RUN_DIR/health-agent-$name.pid"
  done
}

# By their lock files' directory, so an agent whose pid file was lost (a
# stopped session) goes too.
stop_health_agents() {
  local pids
  mapfile -t pids < <(pgrep -f -- "--watch --lock $RUN_DIR/health-agent-")
  stop_pids "${pids[@]}"
  rm -f "$RUN_DIR"/health-agent-*.pid
}

# pids of this cluster's slurmctld and slurmd, from their pid files.
all_slurm_pids() {
  local i
  pid_alive "$RUN_DIR/slurmctld.pid" slurmctld || true
  for ((i = 1; i <= N_NODES; i++)); do
    pid_alive "$RUN_DIR/slurmd-$(node_name "$i").pid" slurmd || true
  done
}

# ---------------------------------------------------------------- commands
cmd_up() {
  need_root up
  check_installed
  local i restart=0 idx old_pids
  make_dirs
  start_munge
  ensure_users
  render_config && restart=1
  # Nodes left over from a run with more nodes go first, so slurmctld never
  # sees a node its config no longer has.
  for idx in $(stale_node_namespaces); do
    say "removing leftover node c$idx"
    remove_node "$idx"
  done
  ensure_bridge
  for ((i = 1; i <= N_NODES; i++)); do ensure_node_net "$i"; done
  if ((restart)); then
    # The config changed: stop every daemon at once (each takes a second or
    # two to exit), so that no node running the old config registers with
    # the new controller.
    say "configuration changed: restarting slurmctld and every slurmd"
    mapfile -t old_pids < <(all_slurm_pids)
    stop_pids "${old_pids[@]}"
  fi
  start_slurmctld "$restart"
  wait_ctld
  remove_stale_workers
  for ((i = 1; i <= N_NODES; i++)); do start_slurmd "$i" "$restart"; done
  # A node held down or drained from an earlier run is resumed: its slurmd now
  # runs, and `up` promises a healthy cluster. Resuming a node whose slurmd has
  # not registered yet is harmless: it turns idle when it does.
  resume_unhealthy_nodes
  start_health_agents
  wait_idle
  say "$N_NODES nodes up; SLURM_CONF=$SLURM_CONF; shared filesystem $SHARED_DIR"
}

# Cancels every job this cluster's slurmctld knows and waits, bounded, until
# none is left pending, running or completing.
cancel_all_jobs() {
  local ids i
  mapfile -t ids < <(timeout 10 squeue -h -o %A 2>/dev/null)
  ((${#ids[@]})) || return 0
  say "cancelling ${#ids[@]} job(s): ${ids[*]}"
  timeout 10 scancel "${ids[@]}" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    [[ -z $(timeout 5 squeue -h -o %A 2>/dev/null) ]] && return 0
    sleep 0.2
  done
  say "jobs still completing after 10 s; stopping the daemons anyway"
}

cmd_down() {
  need_root down
  local i idx pids pid
  # Jobs do not outlive the cluster: slurmctld would restore them from its
  # state at the next `up` and hold nodes for work whose processes are gone.
  if pid_alive "$RUN_DIR/slurmctld.pid" slurmctld >/dev/null; then cancel_all_jobs; fi
  # Workers first: their nodes are deleted while slurmctld still runs.
  remove_workers
  # Every node namespace of ours, whatever count the last `up` used.
  for idx in $(N_NODES=0 stale_node_namespaces); do remove_node "$idx"; done
  for ((i = 1; i <= N_NODES; i++)); do remove_node "$i"; done
  if pid=$(pid_alive "$RUN_DIR/slurmctld.pid" slurmctld); then stop_pids "$pid"; fi
  # Our daemons whose pid files were lost, and job steps they left.
  mapfile -t pids < <(pids_with_conf)
  stop_pids "${pids[@]}"
  if pid=$(pid_alive "$MUNGE_DIR/run/munged.pid" munged); then stop_pids "$pid"; fi
  rm -f "$RUN_DIR"/*.pid "$MUNGE_SOCKET"
  # Only the bridge this script made, and only if no other link uses it.
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    if [[ -z $(ip link show master "$BRIDGE" 2>/dev/null) ]]; then
      ip link delete "$BRIDGE"
    else
      say "leaving $BRIDGE: links not made by this script still use it"
    fi
  fi
  say "down (state, logs and the shared filesystem stay in $STATE_DIR)"
}

cmd_status() {
  local ok=0 pid i name ns
  echo "state dir:   $STATE_DIR"
  echo "SLURM_CONF:  $SLURM_CONF"
  if pid=$(pid_alive "$MUNGE_DIR/run/munged.pid" munged); then echo "munged:      running (pid $pid)"
  else echo "munged:      not running"; ok=1; fi
  if pid=$(pid_alive "$RUN_DIR/slurmctld.pid" slurmctld); then echo "slurmctld:   running (pid $pid)"
  else echo "slurmctld:   not running"; ok=1; fi
  if ip link show "$BRIDGE" >/dev/null 2>&1; then echo "bridge:      $BRIDGE $NET_PREFIX.1/24"
  else echo "bridge:      absent"; ok=1; fi
  for ((i = 1; i <= N_NODES; i++)); do
    name=$(node_name "$i") ns=$(node_ns "$i")
    local net=absent daemon="not running"
    ns_usable "$ns" && net="netns $ns $(node_addr "$i")"
    pid=$(pid_alive "$RUN_DIR/slurmd-$name.pid" slurmd) && daemon="slurmd pid $pid"
    [[ $net == absent || $daemon == "not running" ]] && ok=1
    pid=$(pid_alive "$RUN_DIR/health-agent-$name.pid" odyssey-health-) && daemon+=", health agent pid $pid"
    printf 'node %-6s %s, %s\n' "$name:" "$net" "$daemon"
  done
  worker_status
  if [[ -f $SLURM_CONF ]] && scontrol ping >/dev/null 2>&1; then
    echo "sinfo:"
    sinfo -N -o '  %N %T %c %m %E' 2>/dev/null || true
    [[ $(node_states | grep -cE ' (idle|mixed|allocated|completing)-?$') -eq $N_NODES ]] || ok=1
  else
    echo "slurmctld does not answer"; ok=1
  fi
  ((ok == 0)) && echo "healthy" || echo "not healthy (run '$PROG up' to heal)"
  return $ok
}
