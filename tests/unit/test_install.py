"""The Venus OS installer, run against a temporary /data and /service."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def install(tmp_path: Path, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "data" / "es-ESS"
    if not home.exists():
        shutil.copytree(ROOT / "install", home / "install")
        shutil.copy(ROOT / "esess-flowctl", home / "esess-flowctl")
    (tmp_path / "service").mkdir(exist_ok=True)
    env = dict(os.environ, ESESS_HOME=str(home), ESESS_RC_LOCAL=str(tmp_path / "data/rc.local"),
               ESESS_SERVICE_DIR=str(tmp_path / "service"), PYTHON=python)
    return subprocess.run(["bash", str(home / "install" / "install.sh")], env=env,
                          capture_output=True, text=True, timeout=60)


def test_install_links_the_service_and_survives_firmware_updates(tmp_path: Path) -> None:
    result = install(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    home = tmp_path / "data" / "es-ESS"
    assert (tmp_path / "service" / "es-ESS").resolve() == (home / "install" / "service")
    rc_local = (tmp_path / "data" / "rc.local").read_text()
    assert rc_local == f"#!/bin/bash\n{home}/install/install.sh\n"
    assert (home / "site.yaml").read_text() == (ROOT / "install/site.example.yaml").read_text()


def test_install_twice_changes_nothing(tmp_path: Path) -> None:
    install(tmp_path)
    site = tmp_path / "data" / "es-ESS" / "site.yaml"
    site.write_text("flows: []  # mine\n")
    result = install(tmp_path)
    assert result.returncode == 0
    assert (tmp_path / "data" / "rc.local").read_text().count("install.sh") == 1
    assert site.read_text() == "flows: []  # mine\n"


def test_install_refuses_old_python_and_says_why(tmp_path: Path) -> None:
    old = tmp_path / "python3.8"
    old.write_text("#!/bin/sh\n"
                   "case \"$*\" in *version_info*) exit 1;; *) echo 3.8.13;; esac\n")
    old.chmod(0o755)
    result = install(tmp_path, python=str(old))
    assert result.returncode == 1
    assert "needs Python 3.11 or newer; this GX has 3.8.13" in result.stdout
    assert not (tmp_path / "service" / "es-ESS").exists()


def test_example_site_file_is_valid() -> None:
    from flowengine.loader import load_site

    site = load_site(ROOT / "install" / "site.example.yaml")
    assert site.flows == []


def test_install_fetches_every_missing_runtime_package_preferring_local_wheels(
        tmp_path: Path) -> None:
    """A GX whose Python lacks the D-Bus, MQTT and HTTP libraries: pip is asked for all
    of them, with the wheels copied to /data/es-ESS/wheels looked at first."""
    calls = tmp_path / "pip-calls"
    fake = tmp_path / "python3"
    fake.write_text(f"""#!/bin/bash
case "$*" in
  *version_info*) exit 0 ;;
  "-m pip install"*) echo "$*" >> {calls}; exit 0 ;;
  -) cat > /dev/null; echo "dbus-fast gmqtt aiohttp"; exit 0 ;;
esac
exit 2
""")
    fake.chmod(0o755)
    home = tmp_path / "data" / "es-ESS"
    shutil.copytree(ROOT / "install", home / "install")
    shutil.copy(ROOT / "esess-flowctl", home / "esess-flowctl")
    (home / "wheels").mkdir()
    result = install(tmp_path, python=str(fake))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "installing missing Python packages: dbus-fast gmqtt aiohttp" in result.stdout
    assert calls.read_text().split() == ["-m", "pip", "install", "--find-links",
                                         str(home / "wheels"), "dbus-fast", "gmqtt", "aiohttp"]
