# shellcheck shell=bash
# The SPANK plugin in the cluster's plugin stack: `cluster plugin install
# <path.so>` and `cluster plugin remove`, for either node kind. Sourced by
# slurm-conf/cluster.

cmd_plugin() {
  need_root plugin
  local sub=${1:-} so=${2:-} target conf
  target=$STATE_DIR/lib/odyssey_spank.so
  conf=$ETC_DIR/plugstack.conf.d/odyssey-health.conf
  case $sub in
    install)
      [[ -f $so ]] || die "plugin install needs the path of a built .so, not '$so'"
      install -d -m 0755 "$STATE_DIR/lib" "$ETC_DIR/plugstack.conf.d"
      # A new file renamed over the old one: slurmstepd processes that have the
      # old one mapped keep a valid copy (cluster-notes.md, "SPANK plugins here").
      # Without debug information: srun and every step daemon load it, and a
      # smaller file loads faster (the build keeps the full copy).
      strip --strip-debug -o "$target.new.$$" "$so"
      chmod 0755 "$target.new.$$"
      mv -f "$target.new.$$" "$target"
      # odyssey-health-flush, built beside the .so: each node's agent
      # (`--watch`, started below) sends the node's spool; a step daemon that
      # finds no agent running hands delivery to a flush of its own, so it
      # exits without waiting for the bridge either way.
      local flush_src flush="" flush_arg=""
      flush_src=$(dirname "$so")/odyssey-health-flush
      if [[ -x $flush_src ]]; then
        flush=$STATE_DIR/lib/odyssey-health-flush
        strip --strip-debug -o "$flush.new.$$" "$flush_src"
        chmod 0755 "$flush.new.$$"
        mv -f "$flush.new.$$" "$flush"
        flush_arg=" flush=$flush agent=$(agent_lock)"
      fi
      # `required`, because SPANK ignores every error of an `optional`
      # plugin, including a rejected option value, so `--health-report=bogus`
      # would run the job anyway. The .so and this line come and go together.
      # Health records spool on each node's own disk (under the node's
      # directory here, /var/spool on real machines) and go to the bridge,
      # signed with the cluster's secret, which only root can read.
      local spool url
      spool=$(plugin_spool)
      url=${ODYSSEY_HEALTH_URL:-http://$(controller_addr):8080/v1/health-reports}
      ensure_health_secret
      # worker=: on a machine that joined as a worker (odyssey-worker keeps
      # its certificate there), the agent delivers over mutual TLS instead.
      echo "required $target spool=$spool url=$url secret=$HEALTH_SECRET timeout_ms=1000$flush_arg worker=/var/lib/odyssey-worker" >"$conf.new"
      mv -f "$conf.new" "$conf"
      # Agents of the old build (or settings) make way for new ones.
      stop_health_agents
      start_health_agents
      say "plugin installed: $target" ;;
    remove)
      stop_health_agents
      rm -f "$conf" "$target" "$STATE_DIR/lib/odyssey-health-flush"
      say "plugin removed" ;;
    *) die "usage: $PROG plugin install <path.so> | plugin remove" ;;
  esac
}

# One setting of the installed plugin's plugstack.conf line, empty if none.
plugin_setting() { # <name>
  local conf=$ETC_DIR/plugstack.conf.d/odyssey-health.conf
  [[ -f $conf ]] || return 0
  tr ' ' '\n' <"$conf" | sed -n "s/^$1=//p" | head -n 1
}

# The arguments of one node's delivery agent (odyssey-health-flush --watch)
# from the installed plugin's settings; nothing when the plugin or its
# flush program is not installed.
health_agent_args() { # <node name>
  local flush spool url secret lock
  flush=$(plugin_setting flush) spool=$(plugin_setting spool) url=$(plugin_setting url)
  secret=$(plugin_setting secret) lock=$(plugin_setting agent)
  [[ -x $flush && -n $spool && -n $url && -n $secret && -n $lock ]] || return 0
  printf '%s\n' "$flush" --watch --lock "${lock//%n/$1}" --spool "${spool//%n/$1}" --url "$url" \
    --secret "$secret" --timeout-ms 1000
}
