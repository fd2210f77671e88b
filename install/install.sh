#!/bin/bash
# Install es-ESS flows on a Venus OS GX from /data/es-ESS (this checkout).
# Safe to run again: it is also run from /data/rc.local after a firmware update.
#
# Paths can be moved for testing: ESESS_HOME (default /data/es-ESS),
# ESESS_RC_LOCAL (/data/rc.local), ESESS_SERVICE_DIR (/service), PYTHON (python3).
set -u
home=${ESESS_HOME:-/data/es-ESS}
rc_local=${ESESS_RC_LOCAL:-/data/rc.local}
service_dir=${ESESS_SERVICE_DIR:-/service}
python=${PYTHON:-python3}

say() { echo "es-ESS flows: $*"; }

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  version=$("$python" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || echo none)
  say "needs Python 3.11 or newer; this GX has $version."
  say "Firmware with Python 3.8 is not supported: update Venus OS first."
  exit 1
fi

missing=$("$python" - <<'PY'
import importlib.util
need = {"yaml": "PyYAML", "jsonschema": "jsonschema", "asteval": "asteval",
        "dbus_fast": "dbus-fast", "gmqtt": "gmqtt", "aiohttp": "aiohttp"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
PY
)
if [ -n "$missing" ]; then
  # wheels copied to $home/wheels (built elsewhere, for a GX without network) come first
  find_links=()
  if [ -d "$home/wheels" ]; then
    find_links=(--find-links "$home/wheels")
  fi
  # no compiler on a GX: dbus-fast then installs as pure Python (its Cython part is optional)
  if ! command -v cc >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1; then
    export SKIP_CYTHON=1 AIOHTTP_NO_EXTENSIONS=1
  fi
  say "installing missing Python packages: $missing"
  if ! "$python" -m pip install "${find_links[@]}" $missing; then
    say "could not install $missing; on Venus OS first run: opkg update && opkg install python3-pip"
    say "without network: build wheels elsewhere (see README, Dependencies) into $home/wheels"
    exit 1
  fi
fi

chmod +x "$home/esess-flowctl" "$home/install/"*.sh "$home/install/service/run" \
  "$home/install/service/log/run"

if [ ! -f "$home/site.yaml" ]; then
  cp "$home/install/site.example.yaml" "$home/site.yaml"
  say "created $home/site.yaml: enable flows there, then check it with"
  say "  $home/esess-flowctl validate $home/site.yaml"
fi

if [ ! -f "$rc_local" ]; then
  printf '#!/bin/bash\n' > "$rc_local"
  chmod 755 "$rc_local"
fi
if ! grep -qxF "$home/install/install.sh" "$rc_local"; then
  echo "$home/install/install.sh" >> "$rc_local"
fi

if [ ! -L "$service_dir/es-ESS" ]; then
  ln -s "$home/install/service" "$service_dir/es-ESS"
  say "service linked: $service_dir/es-ESS (daemontools starts it)"
fi
say "installed"
