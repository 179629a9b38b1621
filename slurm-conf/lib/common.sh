# shellcheck shell=bash disable=SC2034 # paths set here are read by the other parts
# What both node kinds share: paths, packages, processes, rendering the
# config, accounts, waiting for a healthy cluster, logs. Sourced by
# slurm-conf/cluster, after the settings and before lib/<mode>.sh.

set_paths() {
  ETC_DIR=$STATE_DIR/etc
  RUN_DIR=$STATE_DIR/run
  LOG_DIR=$STATE_DIR/log
  SHARED_DIR=$STATE_DIR/shared
  MUNGE_DIR=$STATE_DIR/munge
  MUNGE_SOCKET=$MUNGE_DIR/run/munge.socket
  mode_paths
  SLURM_CONF=$ETC_DIR/slurm.conf
  HEALTH_SECRET=$ETC_DIR/health.secret
  export SLURM_CONF
}

need_root() { ((EUID == 0)) || die "'$1' needs root (try: sudo $0 $1)"; }

# ---------------------------------------------------------------- packages
missing_packages() {
  local pkg
  for pkg in "${PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
      || echo "$pkg"
  done
}

cmd_install() {
  need_root install
  local missing
  mapfile -t missing < <(missing_packages "$@")
  if ((${#missing[@]} == 0)); then
    say "all packages present"
    return
  fi
  say "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install failed for: ${missing[*]}"
}

check_installed() {
  local missing
  mapfile -t missing < <(missing_packages)
  ((${#missing[@]} == 0)) || die "missing packages: ${missing[*]} (run '$PROG install')"
}

# ---------------------------------------------------------------- processes
# A daemon of ours is a pid from our pid file whose command name matches,
# and not a zombie: a daemon that died keeps its name until its parent (init
# here, and in a container an init that reaps late) collects it.
pid_alive() { # <pidfile> <comm>
  local pid stat
  [[ -s $1 ]] || return 1
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$2" ]] || return 1
  stat=$(<"/proc/$pid/stat") 2>/dev/null || return 1
  [[ ${stat##*) } != Z* ]] || return 1
  echo "$pid"
}

# SLURM daemons started with this cluster's SLURM_CONF in their environment:
# finds ours even when a crash or a wiped run dir lost their pid files. Only
# daemon names match, never a shell or test that merely exported SLURM_CONF.
pids_with_conf() {
  local comm_file pid
  for comm_file in /proc/[0-9]*/comm; do
    case $(<"$comm_file") in slurmctld | slurmd | slurmstepd) ;; *) continue ;; esac 2>/dev/null
    pid=${comm_file#/proc/}; pid=${pid%/comm}
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$SLURM_CONF"; then
      echo "$pid"
    fi
  done
}

# TERM, wait up to 10 s, then KILL.
stop_pids() {
  local pid i alive
  (($#)) || return 0
  kill -TERM "$@" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    alive=()
    for pid in "$@"; do [[ -d /proc/$pid ]] && alive+=("$pid"); done
    ((${#alive[@]} == 0)) && return 0
    sleep 0.1
  done
  kill -KILL "${alive[@]}" 2>/dev/null || true
}

# ---------------------------------------------------------------- config
# Fills a template's @VARIABLES@. Values reach awk through the environment
# (ENVIRON), not -v, which would expand backslash escapes, and replace
# literally: gsub's replacement would turn an `&` in a value into the
# matched text. Returns 1 when the output did not change.
# What a node line gets when the node is a spare (SPARES), nothing
# otherwise; dies if SPARES names a node the cluster does not have.
spare_attrs() { # <node name>
  local spare i
  for spare in ${SPARES//,/ }; do
    if [[ $MODE == netns ]]; then
      for ((i = 1; i <= N_NODES; i++)); do [[ $spare == "$(node_name "$i")" ]] && break; done
      ((i <= N_NODES)) || die "--spares names node '$spare', which this cluster does not have"
    fi
    if [[ $spare == "$1" ]]; then echo " Weight=100 Features=spare"; fi
  done
  return 0
}

# One PartitionName line per entry of PARTITIONS; dies on a malformed one.
partition_lines() {
  local entry name nodes opts node first=YES seen=" "
  [[ -n ${PARTITIONS// /} ]] || die "--partitions needs at least one partition"
  for entry in $PARTITIONS; do
    IFS=: read -r name nodes opts <<<"$entry"
    [[ $name =~ ^[a-z][a-z0-9_-]{0,31}$ ]] \
      || die "--partitions: '$name' is not a partition name (a lower-case letter, then letters, digits, '_' or '-')"
    [[ $seen != *" $name "* ]] || die "--partitions: '$name' is named twice"
    seen+="$name "
    if [[ $nodes != ALL ]]; then
      [[ -n $nodes ]] || die "--partitions: '$name' needs nodes (ALL or a comma list)"
      for node in ${nodes//,/ }; do
        local i
        for ((i = 1; i <= N_NODES; i++)); do [[ $node == "$(node_name "$i")" ]] && break; done
        ((i <= N_NODES)) || die "--partitions: '$name' names node '$node', which this cluster does not have"
      done
    fi
    local max=INFINITE
    if [[ -n $opts ]]; then
      [[ $opts =~ ^MaxTime=([0-9]+)$ ]] || die "--partitions: '$name': the only option is MaxTime=<minutes>, not '$opts'"
      max=${BASH_REMATCH[1]}
    fi
    echo "PartitionName=$name Nodes=$nodes Default=$first MaxTime=$max State=UP"
    first=NO
  done
}

render() { # <template> <output>
  local tmp=$2.new.$$
  CTLD_HOST=$(controller_host) CTLD_ADDR=$(controller_addr) AUTH_INFO=$(auth_info) NODE_LINES=$(node_lines) \
    PARTITION_LINES=$(partition_lines) \
    STATE_DIR=$STATE_DIR RUN_DIR=$RUN_DIR LOG_DIR=$LOG_DIR ETC_DIR=$ETC_DIR CTLD_PORT=$CTLD_PORT \
    SLURMD_PORT=$SLURMD_PORT SLURMD_TIMEOUT=$SLURMD_TIMEOUT MIN_JOB_AGE=$MIN_JOB_AGE \
    MAX_NODES=$((N_NODES + MAX_WORKERS)) \
    awk '
    function replace(text, token, value,    at, out) {
      out = ""
      while ((at = index(text, token)) > 0) {
        out = out substr(text, 1, at - 1) value
        text = substr(text, at + length(token))
      }
      return out text
    }
    BEGIN {
      n = split("CTLD_HOST CTLD_ADDR AUTH_INFO NODE_LINES PARTITION_LINES STATE_DIR RUN_DIR LOG_DIR ETC_DIR CTLD_PORT SLURMD_PORT SLURMD_TIMEOUT MIN_JOB_AGE MAX_NODES", names, " ")
    }
    {
      line = $0
      for (i = 1; i <= n; i++) line = replace(line, "@" names[i] "@", ENVIRON[names[i]])
      print line
    }' "$SCRIPT_DIR/$1" >"$tmp" || die "cannot render $1 into $2"
  if [[ -f $2 ]] && cmp -s "$tmp" "$2"; then
    rm -f "$tmp"
    return 1 # unchanged
  fi
  mv "$tmp" "$2"
}

# Returns 0 when slurm.conf changed, so running daemons must restart.
render_config() {
  local changed=1
  install -d -m 0755 "$ETC_DIR" "$ETC_DIR/plugstack.conf.d"
  render slurm.conf.in "$SLURM_CONF" && changed=0
  render plugstack.conf.in "$ETC_DIR/plugstack.conf" || true
  render mpi.conf.in "$ETC_DIR/mpi.conf" || true
  return $changed
}

make_dirs() {
  install -d -m 0755 "$STATE_DIR" "$RUN_DIR" "$LOG_DIR" "$STATE_DIR/ctld" "$STATE_DIR/nodes" \
    "$SHARED_DIR" "$SHARED_DIR/bin"
  # Anyone may create files in the shared filesystem (like /tmp, sticky);
  # each test account also gets a directory of its own.
  install -d -m 1777 "$SHARED_DIR/scratch"
  install -d -m 0755 "$SHARED_DIR/users"
}

ensure_users() {
  local entry name uid
  for entry in "${TEST_USERS[@]}"; do
    name=${entry%%:*} uid=${entry#*:}
    if ! id -u "$name" >/dev/null 2>&1; then
      if getent passwd "$uid" >/dev/null; then
        useradd --create-home --shell /bin/bash "$name"
      else
        useradd --create-home --shell /bin/bash --uid "$uid" "$name"
      fi
    fi
    install -d -m 0750 -o "$name" -g "$(id -gn "$name")" "$SHARED_DIR/users/$name"
  done
}

# ---------------------------------------------------------------- health
wait_ctld() {
  local deadline=$((SECONDS + UP_TIMEOUT))
  until scontrol ping 2>/dev/null | grep -q 'is UP'; do
    ((SECONDS < deadline)) || { log_tail slurmctld.log; die "slurmctld does not answer after ${UP_TIMEOUT}s"; }
    sleep 0.1
  done
}

# "name state" for every node slurmctld knows.
# The configured nodes' states; workers that joined (dynamic nodes, feature
# "worker", `cluster join`) come and go and are not the cluster's health.
node_states() {
  sinfo -h -N -o '%N %T %f' 2>/dev/null | awk '$3 !~ /(^|,)worker(,|$)/ { print $1, $2 }' | sort -u
}

resume_unhealthy_nodes() {
  local name state
  while read -r name state; do
    case $state in
      down* | drain* | fail*)
        say "resuming $name (was $state)"
        scontrol update nodename="$name" state=resume 2>/dev/null || true ;;
    esac
  done < <(node_states)
}

wait_idle() {
  local deadline=$((SECONDS + UP_TIMEOUT)) states n_idle
  while :; do
    states=$(node_states)
    # Running jobs (mixed, allocated) are a healthy cluster's business;
    # completing is a passing state after a restart, worth waiting out. A
    # trailing "-" only means the backfill scheduler planned the node; "*"
    # (not responding) and the power suffixes are not healthy.
    n_idle=$(grep -cE ' (idle|mixed|allocated)-?$' <<<"$states" || true)
    ((n_idle == N_NODES)) && return 0
    if ((SECONDS >= deadline)); then
      say "only $n_idle of $N_NODES nodes became idle within ${UP_TIMEOUT}s:"
      printf '  %s\n' "${states//$'\n'/$'\n'  }" >&2
      for_each_log
      die "cluster is not healthy"
    fi
    sleep 0.2
  done
}

log_tail() { # <log file name>
  local f=$LOG_DIR/$1
  [[ -f $f ]] || return 0
  echo "---- last lines of $f" >&2
  tail -n 15 "$f" >&2
}

for_each_log() {
  local f
  for f in "$LOG_DIR"/*.log; do [[ -f $f ]] && log_tail "${f##*/}"; done
}

cmd_env() {
  echo "export SLURM_CONF=$SLURM_CONF"
  echo "export ODYSSEY_STATE_DIR=$STATE_DIR"
  echo "export ODYSSEY_SHARED_DIR=$SHARED_DIR"
  echo "export ODYSSEY_HEALTH_SECRET=$HEALTH_SECRET"
}

# The health-report secret shared by the plugin and the bridge: from the
# host (ODYSSEY_HEALTH_SECRET_SRC, so that VMs agree) or made here once.
ensure_health_secret() {
  install -d -m 0755 "$ETC_DIR"
  if [[ -n ${ODYSSEY_HEALTH_SECRET_SRC:-} ]]; then
    install -m 0600 "$ODYSSEY_HEALTH_SECRET_SRC" "$HEALTH_SECRET"
  elif [[ ! -s $HEALTH_SECRET ]]; then
    (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$HEALTH_SECRET.new")
    mv "$HEALTH_SECRET.new" "$HEALTH_SECRET"
  fi
}
