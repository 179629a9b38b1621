# shellcheck shell=bash
# Workers on namespace machines: `cluster join NAME` makes a new machine (a
# network, mount and UTS namespace with its own address, hostname, /tmp,
# /dev/shm and /run/slurm) that has no slurm.conf, munge key or health
# secret of the cluster's, and runs nothing but `odyssey-worker join`: the
# path a real machine takes (issue #11). Sourced by slurm-conf/cluster.

# Workers get addresses .100 to .199 of the cluster network.
WORKER_NS_PREFIX=${NS_PREFIX}worker-

worker_dir() { echo "$STATE_DIR/workers/$1"; }
worker_ns() { echo "$WORKER_NS_PREFIX$1"; }

check_worker_name() {
  [[ $1 =~ ^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$ ]] \
    || die "a worker name is 1 to 32 lower-case letters, digits and '-', not '$1'"
  [[ $1 =~ ^c[0-9]+$ ]] && die "'$1' is the name of a configured node, not a worker's"
  return 0
}

# The machine's address, kept across rejoins; a free one for a new machine.
worker_addr() { # <name> (under the workers lock)
  local dir octet used other
  dir=$(worker_dir "$1")
  used=$(for other in "$STATE_DIR"/workers/*/addr; do
    [[ -s $other && $other != "$dir/addr" ]] && cat "$other"
  done)
  if [[ -s $dir/addr ]] && ! grep -qxF "$(cat "$dir/addr")" <<<"$used"; then
    cat "$dir/addr"
    return
  fi
  for ((octet = 100; octet <= 199; octet++)); do
    grep -qxF "$NET_PREFIX.$octet" <<<"$used" || { echo "$NET_PREFIX.$octet"; return; }
  done
  die "no free worker address left (.100 to .199 are taken)"
}

# pid of the worker's agent (odyssey-worker), if it runs: the pid `join`
# started (nsenter, unshare, sh and setsid each exec the next, so it is the
# agent's), else any agent in the machine's namespace. (`ip netns pids`
# alone can miss it while processes come and go under /proc.)
worker_agent_pid() { # <name>
  local pid
  if pid=$(pid_alive "$(worker_dir "$1")/agent.pid" odyssey-worker); then
    echo "$pid"
    return 0
  fi
  for pid in $(ip netns pids "$(worker_ns "$1")" 2>/dev/null); do
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == odyssey-worker ]] && { echo "$pid"; return 0; }
  done
  return 1
}

worker_binary() {
  local bin=${ODYSSEY_WORKER_BIN:-$SCRIPT_DIR/../target/release/odyssey-worker}
  [[ -x $bin ]] || die "no odyssey-worker binary at $bin (build it: cargo build --release -p odyssey-worker, or set ODYSSEY_WORKER_BIN)"
  echo "$bin"
}

# cluster join NAME --bridge URL --token T [--ca-file F] [--features a,b]
cmd_join() {
  need_root join
  local name=${1:-} bridge="" token="" ca_file="" features="" bin dir addr ns veth mem log from deadline
  [[ -n $name ]] || die "usage: $PROG join NAME --bridge URL --token TOKEN [--ca-file FILE] [--features a,b]"
  shift
  while (($#)); do
    case $1 in
      --bridge) bridge=${2:?}; shift 2 ;;
      --token) token=${2:?}; shift 2 ;;
      --ca-file) ca_file=${2:?}; shift 2 ;;
      --features) features=${2:?}; shift 2 ;;
      *) die "join: unknown argument '$1'" ;;
    esac
  done
  [[ -n $bridge && -n $token ]] || die "join needs --bridge URL and --token TOKEN"
  check_worker_name "$name"
  bin=$(worker_binary)
  worker_agent_pid "$name" >/dev/null && die "worker $name already runs (cluster leave-worker $name first)"
  dir=$(worker_dir "$name")
  install -d -m 0755 "$STATE_DIR/workers" "$dir"
  # Machines joining at once must not pick the same address: one at a time
  # from choosing it to its link being up.
  local lock
  exec {lock}>"$STATE_DIR/workers/.lock"
  flock "$lock"
  addr=$(worker_addr "$name")
  echo "$addr" >"$dir/addr"
  # A fresh machine every time: nothing of an earlier one survives.
  rm -rf "$dir/agent" "$dir/munge" "$dir/tmp"
  install -d -m 0700 "$dir/agent"
  install -d -m 0755 "$dir/munge"
  install -d -m 1777 "$dir/tmp"
  # The program and the CA file go onto the machine (its /tmp is its own,
  # so a checkout or a file under /tmp here is not there).
  install -m 0755 "$bin" "$dir/odyssey-worker"
  bin=$dir/odyssey-worker
  if [[ -n $ca_file ]]; then
    install -m 0644 "$ca_file" "$dir/ca.pem"
    ca_file=$dir/ca.pem
  fi
  # Mount points on this machine for the worker's private directories.
  install -d -m 0755 /var/lib/odyssey-worker /run/slurm /run/munge
  ns=$(worker_ns "$name") veth=odw-${addr##*.}
  ensure_bridge
  ensure_net "$ns" "$veth" "$addr"
  exec {lock}>&-
  { cat /etc/hosts; echo "$addr $name"; } >"$dir/hosts"
  mem=$(awk -v n="$((N_NODES + 1))" '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 / n }' /proc/meminfo)
  # Kept across joins (an earlier join's failure stays readable); this
  # join's lines are those after the mark.
  log=$LOG_DIR/worker-$name.log
  echo "=== $(date -u +%FT%TZ) joining $name at $addr" >>"$log"
  from=$(($(stat -c %s "$log") + 1))
  # shellcheck disable=SC2016 # the inner shell's positional arguments
  nsenter --net="/run/netns/$ns" -- unshare --mount --uts --propagation private -- \
    /bin/sh -ec '
      hostname "$1"
      mount --bind "$2/tmp" /tmp
      mount -t tmpfs -o mode=1777 tmpfs /dev/shm
      mount -t tmpfs -o mode=0755 tmpfs /run/slurm
      mount -t tmpfs -o mode=0755 tmpfs /run/munge
      mount --bind "$2/agent" /var/lib/odyssey-worker
      # The machine knows its own name (munged looks it up at start).
      mount --bind "$2/hosts" /etc/hosts
      # No munge key and no health secret of the cluster on this machine.
      mount --bind "$2/munge" "$3"
      [ ! -e "$4" ] || mount --bind /dev/null "$4"
      shift 4
      exec setsid "$@"' \
    worker-machine "$name" "$dir" "$MUNGE_DIR" "$HEALTH_SECRET" \
    "$bin" join --bridge "$bridge" --token "$token" --name "$name" \
    ${ca_file:+--ca-file "$ca_file"} ${features:+--features "$features"} \
    --cpus "$(nproc)" --memory-mb "$mem" --health-spool "$(plugin_spool)" \
    </dev/null >>"$log" 2>&1 &
  echo "$!" >"$dir/agent.pid"
  disown
  deadline=$((SECONDS + UP_TIMEOUT))
  while ! tail -c "+$from" "$log" | grep -q 'is idle in sinfo'; do
    if ! kill -0 "$(cat "$dir/agent.pid")" 2>/dev/null; then
      tail -n 5 "$log" >&2
      die "worker $name did not join (log: $log)"
    fi
    ((SECONDS < deadline)) || { tail -n 5 "$log" >&2; die "worker $name is not idle after ${UP_TIMEOUT}s (log: $log)"; }
    sleep 0.2
  done
  say "worker $name joined at $addr (log: $log)"
}

# The worker leaves as a real machine would: `odyssey-worker leave` on it.
cmd_leave_worker() {
  need_root leave-worker
  local name=${1:-} timeout=${2:-300} pid
  [[ -n $name ]] || die "usage: $PROG leave-worker NAME [TIMEOUT_SECONDS]"
  check_worker_name "$name"
  pid=$(worker_agent_pid "$name") || die "worker $name has no running agent"
  nsenter -t "$pid" -n -m -u -- "$(worker_dir "$name")/odyssey-worker" leave --timeout "$timeout" \
    || die "worker $name did not leave cleanly"
  remove_worker_machine "$name"
  say "worker $name left"
}

# The machine vanishes (power cut): every process in it killed, nothing
# told to anyone. SLURM marks the node down; the bridge shows it lost.
cmd_kill_worker() {
  need_root kill-worker
  local name=${1:-} pids
  [[ -n $name ]] || die "usage: $PROG kill-worker NAME"
  check_worker_name "$name"
  mapfile -t pids < <(worker_agent_pid "$name"; ip netns pids "$(worker_ns "$name")" 2>/dev/null)
  if ((${#pids[@]})); then kill -KILL "${pids[@]}" 2>/dev/null || true; fi
  remove_worker_machine "$name"
  say "worker $name killed"
}

remove_worker_machine() { # <name>: its processes, network and namespace
  local name=$1 ns pids addr
  ns=$(worker_ns "$name")
  if [[ -e /run/netns/$ns ]]; then
    # The agent first (it would restart slurmd), then the rest, twice:
    # `ip netns pids` can miss a process while others come and go.
    mapfile -t pids < <(worker_agent_pid "$name")
    stop_pids "${pids[@]}"
    mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
    stop_pids "${pids[@]}"
    mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
    stop_pids "${pids[@]}"
    ip netns delete "$ns" 2>/dev/null || { umount "/run/netns/$ns" 2>/dev/null; rm -f "/run/netns/$ns"; }
  fi
  addr=$(cat "$(worker_dir "$name")/addr" 2>/dev/null || true)
  rm -f "$(worker_dir "$name")/agent.pid"
  # Deleting the namespace took its end of the pair and so the pair.
  if [[ -n $addr ]]; then ip link delete "odw-${addr##*.}" 2>/dev/null || true; fi
}

# Every worker machine, for `down`: removed, and their nodes deleted from
# SLURM (dynamic nodes would otherwise come back with slurmctld's state).
remove_workers() {
  local ns name
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    [[ $ns == "$WORKER_NS_PREFIX"* ]] || continue
    name=${ns#"$WORKER_NS_PREFIX"}
    remove_worker_machine "$name"
  done
  for name in $(sinfo -h -N -o '%N %f' 2>/dev/null | awk '$2 ~ /(^|,)worker(,|$)/ { print $1 }' | sort -u); do
    timeout 10 scontrol delete nodename="$name" 2>/dev/null || true
  done
}

# For `up`: a worker node whose machine has no running agent here (a
# session stopped mid-test, a machine killed and never rejoined) can never
# come back; its machine and its node go, so the cluster is the configured
# one plus live workers.
remove_stale_workers() {
  local name
  for name in $(sinfo -h -N -o '%N %f' 2>/dev/null | awk '$2 ~ /(^|,)worker(,|$)/ { print $1 }' | sort -u); do
    worker_agent_pid "$name" >/dev/null && continue
    say "removing stale worker $name (no agent runs on its machine)"
    remove_worker_machine "$name"
    timeout 10 scontrol delete nodename="$name" 2>/dev/null || true
  done
}

worker_status() {
  local dir name state
  for dir in "$STATE_DIR"/workers/*/; do
    [[ -d $dir ]] || continue
    name=$(basename "$dir")
    state=gone
    worker_agent_pid "$name" >/dev/null && state="agent running"
    printf 'worker %-8s %s, %s\n' "$name:" "$(cat "$dir/addr" 2>/dev/null)" "$state"
  done
}
