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
      # odyssey-health-flush, built beside the .so: step daemons hand it
      # delivery so they exit without waiting for the bridge.
      local flush_src flush="" flush_arg=""
      flush_src=$(dirname "$so")/odyssey-health-flush
      if [[ -x $flush_src ]]; then
        flush=$STATE_DIR/lib/odyssey-health-flush
        strip --strip-debug -o "$flush.new.$$" "$flush_src"
        chmod 0755 "$flush.new.$$"
        mv -f "$flush.new.$$" "$flush"
        flush_arg=" flush=$flush"
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
      say "plugin installed: $target" ;;
    remove)
      rm -f "$conf" "$target" "$STATE_DIR/lib/odyssey-health-flush"
      say "plugin removed" ;;
    *) die "usage: $PROG plugin install <path.so> | plugin remove" ;;
  esac
}
