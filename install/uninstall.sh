#!/bin/bash
# Stop es-ESS flows and remove it from the boot sequence; leaves site.yaml, state and logs.
set -u
home=${ESESS_HOME:-/data/es-ESS}
rc_local=${ESESS_RC_LOCAL:-/data/rc.local}
service_dir=${ESESS_SERVICE_DIR:-/service}
if [ -L "$service_dir/es-ESS" ]; then
  svc -d "$service_dir/es-ESS" 2>/dev/null  # SIGTERM: every node goes to its safe state
  rm "$service_dir/es-ESS"
fi
if [ -f "$rc_local" ]; then
  grep -vxF "$home/install/install.sh" "$rc_local" > "$rc_local.tmp"
  cat "$rc_local.tmp" > "$rc_local" && rm "$rc_local.tmp"
fi
echo "es-ESS flows: uninstalled (site.yaml, state and logs are kept in $home)"
