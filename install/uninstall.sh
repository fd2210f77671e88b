#!/bin/bash
# Stop es-ESS flows and take it out of the boot sequence.
# Keeps site.yaml, secrets.yaml, the state and the logs unless --purge is given.
#
# Usage: uninstall.sh [--purge]
#   --purge  also delete the installation directory (site.yaml, secrets, state) and logs
#
# Paths as in install.sh: ESESS_HOME, ESESS_RC_LOCAL, ESESS_SERVICE_DIR, ESESS_LOG_DIR.
set -u
home=${ESESS_HOME:-$(cd "$(dirname "$0")/.." && pwd -P)}
rc_local=${ESESS_RC_LOCAL:-/data/rc.local}
service_dir=${ESESS_SERVICE_DIR:-/service}
log_dir=${ESESS_LOG_DIR:-/data/log/es-ESS-flows}
link=$service_dir/es-ESS-flows

say() { echo "es-ESS flows: $*"; }

purge=0
for arg in "$@"; do
  case $arg in
    --purge) purge=1 ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) say "unknown option $arg (see --help)"; exit 2 ;;
  esac
done

# first out of the boot hook, so nothing links the service again
if [ -f "$rc_local" ] && grep -qxF "$home/install/install.sh" "$rc_local"; then
  grep -vxF "$home/install/install.sh" "$rc_local" > "$rc_local.tmp"
  cat "$rc_local.tmp" > "$rc_local" && rm -f "$rc_local.tmp"
fi

if [ -L "$link" ] || [ -d "$link" ]; then
  if svok "$link" 2>/dev/null; then
    # -d: SIGTERM, every node goes to its safe state; -x: supervise exits afterwards
    svc -dx "$link"
    waited=0
    while svok "$link" 2>/dev/null && [ $waited -lt 150 ]; do
      sleep 0.1; waited=$((waited + 1))
    done
    svok "$link" 2>/dev/null && say "the service did not stop within 15 s; see $log_dir/current"
  fi
  if svok "$link/log" 2>/dev/null; then
    svc -dx "$link/log"   # after the service: multilog writes its last lines first
    waited=0
    while svok "$link/log" 2>/dev/null && [ $waited -lt 50 ]; do
      sleep 0.1; waited=$((waited + 1))
    done
  fi
  rm -f "$link"
fi

if [ $purge = 1 ]; then
  rm -rf "$home" "$log_dir"
  say "uninstalled and deleted $home and $log_dir"
else
  say "uninstalled; kept $home (site.yaml, secrets.yaml, state) and the logs in $log_dir"
  say "to delete them too: $home/install/uninstall.sh --purge"
fi
