#!/bin/bash
# Install es-ESS flows on a Venus OS GX from a release archive unpacked to /data:
#   tar -xzf esess-flows-<version>-py3.12-armv7l.tar.gz -C /data && /data/es-ESS-flows/install/install.sh
# Needs no network: the dependencies come from the archive's wheels/ (scripts/bundle).
# Safe to run again; /data/rc.local runs it at every boot, because /service and the
# root filesystem are rebuilt at boot and by a firmware update (only /data survives).
#
# Usage: install.sh [--replace-es-ess]
#   --replace-es-ess  stop and disable the original es-ESS (/data/es-ESS): it publishes
#                     the same D-Bus names, so the two must not run together.
#
# Paths can be moved for testing: ESESS_HOME (default: the directory above this script),
# ESESS_RC_LOCAL (/data/rc.local), ESESS_SERVICE_DIR (/service), ESESS_OLD_HOME (/data/es-ESS,
# the original es-ESS), ESESS_LOG_DIR (/data/log/es-ESS-flows), PYTHON (python3).
set -u
home=${ESESS_HOME:-$(cd "$(dirname "$0")/.." && pwd -P)}
rc_local=${ESESS_RC_LOCAL:-/data/rc.local}
service_dir=${ESESS_SERVICE_DIR:-/service}
old_home=${ESESS_OLD_HOME:-/data/es-ESS}
log_dir=${ESESS_LOG_DIR:-/data/log/es-ESS-flows}
python=${PYTHON:-python3}
name=es-ESS-flows   # service name; the original es-ESS is "es-ESS"
old_link=$service_dir/es-ESS
venv=$home/venv
wheels=$home/wheels

say() { echo "es-ESS flows: $*"; }

replace=0
for arg in "$@"; do
  case $arg in
    --replace-es-ess) replace=1 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) say "unknown option $arg (see --help)"; exit 2 ;;
  esac
done

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  version=$("$python" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || echo none)
  say "needs Python 3.11 or newer; this GX has $version."
  say "Firmware with Python 3.8 is not supported: update Venus OS first."
  exit 1
fi

# -- dependencies: a virtual environment on /data, from the archive's wheels only --------
install_dependencies() {
  local here built want
  if [ ! -f "$wheels/requirements.txt" ]; then
    say "no $wheels/requirements.txt: this is not a release archive."
    say "make one with scripts/bundle on a PC and unpack it here (see docs/install.md)"
    return 1
  fi
  here=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  built=$(cat "$wheels/python-version" 2>/dev/null || echo "$here")
  if [ "$built" != "$here" ]; then
    say "this archive holds wheels for Python $built; this GX has Python $here."
    say "use the release archive for Python $here (scripts/bundle --python-version $here)"
    return 1
  fi
  want="python $here; $(sha256sum "$wheels/requirements.txt" | cut -d' ' -f1)"
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.installed" 2>/dev/null)" = "$want" ] &&
     "$venv/bin/python" -c 'import yaml, jsonschema, asteval, dbus_fast, gmqtt, aiohttp' \
       2>/dev/null; then
    return 0   # at boot: nothing to do
  fi
  if [ -x "$venv/bin/python" ] &&
     [ "$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' \
          2>/dev/null)" != "$here" ]; then
    say "the firmware's Python changed: making $venv again"
    rm -rf "$venv"
  fi
  if [ ! -x "$venv/bin/python" ]; then
    # without pip: the archive brings its own, so ensurepip and opkg are not needed
    if ! "$python" -m venv --without-pip "$venv"; then
      rm -rf "$venv"
      say "could not create $venv: this Python has no venv module"
      return 1
    fi
  fi
  if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    local pip_wheel="" found
    for found in "$wheels"/pip-*.whl; do [ -f "$found" ] && pip_wheel=$found; done
    if [ -z "$pip_wheel" ] || ! "$venv/bin/python" "$pip_wheel/pip" install --quiet \
        --no-index --find-links "$wheels" --disable-pip-version-check pip; then
      say "could not install pip into $venv from $wheels"
      return 1
    fi
  fi
  say "installing the Python packages from $wheels (no network needed)"
  # the venv's own pip, offline: only what the archive holds
  if ! "$venv/bin/python" -m pip install --quiet --no-index --find-links "$wheels" \
      --disable-pip-version-check --no-warn-script-location -r "$wheels/requirements.txt"; then
    say "pip could not install $wheels/requirements.txt (see the lines above)"
    return 1
  fi
  echo "$want" > "$venv/.installed"
}

# -- the original es-ESS (realdognose/es-ESS): same D-Bus names, same grid setpoint --------
old_pids() { pgrep -f "python[0-9.]* $old_home/es-ESS.py" 2>/dev/null; }
old_enabled() {
  [ -e "$old_link" ] || [ -L "$old_link" ] || [ -n "$(old_pids)" ] ||
    { [ -f "$rc_local" ] && grep -qxF "$old_home/install.sh" "$rc_local"; }
}

replace_es_ess() {
  local pids waited=0
  if [ -L "$old_link" ] || [ -d "$old_link" ]; then
    # -x: supervise exits once the service is down, so removing the link really ends it
    # (the original's own uninstall.sh leaves the link and its supervise behind)
    svc -dx "$old_link" 2>/dev/null
    [ -d "$old_link/log" ] && svc -dx "$old_link/log" 2>/dev/null
    if [ -L "$old_link" ]; then
      rm -f "$old_link"
    else
      say "$old_link is a directory, not a link: remove it by hand"
    fi
  fi
  # its run script starts python without exec, so supervise's SIGTERM only ends the
  # shell: end es-ESS.py itself, with SIGTERM, so it writes its default setpoint
  pids=$(old_pids)
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086  # one pid a word
    kill -TERM $pids 2>/dev/null
    while [ -n "$(old_pids)" ] && [ $waited -lt 150 ]; do sleep 0.1; waited=$((waited + 1)); done
    pids=$(old_pids)
    if [ -n "$pids" ]; then
      say "es-ESS did not end within 15 s of SIGTERM: killing it"
      # shellcheck disable=SC2086
      kill -KILL $pids 2>/dev/null
    fi
  fi
  if [ -f "$rc_local" ] && grep -qxF "$old_home/install.sh" "$rc_local"; then
    grep -vxF "$old_home/install.sh" "$rc_local" > "$rc_local.tmp"
    cat "$rc_local.tmp" > "$rc_local" && rm -f "$rc_local.tmp"
  fi
  say "stopped and disabled the original es-ESS (its files stay in $old_home)"
}

if ! install_dependencies; then
  exit 1
fi

chmod 755 "$home/esess-flowctl" "$home/install/"*.sh "$home/install/service/run" \
  "$home/install/service/log/run"

example_site() { sed "s#/data/es-ESS-flows#$home#g" "$home/install/site.example.yaml"; }
created_site=0
if [ ! -f "$home/site.yaml" ]; then
  created_site=1
  example_site > "$home/site.yaml"
  say "created $home/site.yaml: enable flows there, then check it with"
  say "  $home/esess-flowctl validate $home/site.yaml"
fi

# the boot hook: never after an `exit` line, or it would not run
line="$home/install/install.sh"
if [ ! -f "$rc_local" ]; then
  printf '#!/bin/bash\n' > "$rc_local"
fi
chmod 755 "$rc_local"
if ! grep -qxF "$line" "$rc_local"; then
  if grep -qE '^[[:space:]]*exit([[:space:]]|$)' "$rc_local"; then
    awk -v line="$line" '!done && /^[[:space:]]*exit([[:space:]]|$)/ {print line; done=1} 1' \
      "$rc_local" > "$rc_local.tmp" && cat "$rc_local.tmp" > "$rc_local" && rm -f "$rc_local.tmp"
  else
    echo "$line" >> "$rc_local"
  fi
fi

if [ $replace = 1 ] && old_enabled; then
  replace_es_ess
fi
if old_enabled; then
  say "the original es-ESS is installed in $old_home and enabled (service $old_link)."
  say "It publishes the same D-Bus names and writes the same grid setpoint, so"
  say "es-ESS flows is NOT started while it runs. To stop and disable it, run:"
  say "  $home/install/install.sh --replace-es-ess"
  exit 3
fi
if [ -f "$old_home/config.ini" ] && { [ $replace = 1 ] || [ $created_site = 1 ]; }; then
  force=""   # import-ini keeps an existing site.yaml, unless it is still the example
  [ "$(example_site)" = "$(cat "$home/site.yaml")" ] && force="--force "
  say "next: bring the settings of the original es-ESS over with"
  say "  $home/esess-flowctl import-ini $force$old_home/config.ini"
fi

if [ "$(readlink "$service_dir/$name" 2>/dev/null)" != "$home/install/service" ]; then
  rm -f "$service_dir/$name"
  ln -s "$home/install/service" "$service_dir/$name"
  say "service linked: $service_dir/$name (daemontools starts it within 5 s)"
fi
say "installed; logs: $log_dir/current (read with: tail -F $log_dir/current | tai64nlocal)"
