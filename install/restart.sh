#!/bin/bash
# Restart es-ESS flows: daemontools sends SIGTERM (every node goes to its safe state, the
# guardian waits for the runtime) and starts it again.
set -u
link="${ESESS_SERVICE_DIR:-/service}/es-ESS-flows"
if ! svok "$link" 2>/dev/null; then
  echo "es-ESS flows: $link is not running under daemontools; run install/install.sh" >&2
  exit 1
fi
if svstat "$link" | grep -q ': up '; then
  svc -t "$link"
else
  svc -u "$link"   # it was stopped with svc -d
fi
echo "es-ESS flows: restarting ($link)"
