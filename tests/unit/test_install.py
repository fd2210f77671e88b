"""The Venus OS installer and the release archive's checks, without building an archive.

tests/integration/venus/ installs a real archive (scripts/bundle --host) into a fake GX
and runs the service under daemontools.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import ROOT


def install(tmp_path: Path, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "data" / "es-ESS-flows"
    if not (home / "install").exists():
        shutil.copytree(ROOT / "install", home / "install")
        shutil.copy(ROOT / "esess-flowctl", home / "esess-flowctl")
    (tmp_path / "service").mkdir(exist_ok=True)
    env = dict(os.environ, ESESS_HOME=str(home), ESESS_RC_LOCAL=str(tmp_path / "data/rc.local"),
               ESESS_SERVICE_DIR=str(tmp_path / "service"),
               ESESS_OLD_HOME=str(tmp_path / "data/es-ESS"), PYTHON=python)
    return subprocess.run(["bash", str(home / "install" / "install.sh")], env=env,
                          capture_output=True, text=True, timeout=60)


def test_install_refuses_old_python_and_says_why(tmp_path: Path) -> None:
    old = tmp_path / "python3.8"
    old.write_text("#!/bin/sh\n"
                   "case \"$*\" in *version_info*) exit 1;; *) echo 3.8.13;; esac\n")
    old.chmod(0o755)
    result = install(tmp_path, python=str(old))
    assert result.returncode == 1
    assert "needs Python 3.11 or newer; this GX has 3.8.13" in result.stdout
    assert not (tmp_path / "service" / "es-ESS-flows").exists()


def test_install_from_a_checkout_without_wheels_says_to_make_an_archive(tmp_path: Path) -> None:
    result = install(tmp_path)
    assert result.returncode == 1
    assert "this is not a release archive" in result.stdout
    assert "scripts/bundle" in result.stdout
    assert not (tmp_path / "service" / "es-ESS-flows").exists()


def test_install_refuses_an_archive_built_for_another_python(tmp_path: Path) -> None:
    wheels = tmp_path / "data" / "es-ESS-flows" / "wheels"
    wheels.mkdir(parents=True)
    (wheels / "requirements.txt").write_text("")
    (wheels / "python-version").write_text("3.9\n")
    result = install(tmp_path)
    assert result.returncode == 1
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert f"wheels for Python 3.9; this GX has Python {here}" in result.stdout


def test_example_site_file_is_valid() -> None:
    from flowengine.loader import load_site

    site = load_site(ROOT / "install" / "site.example.yaml")
    assert site.flows == []
    assert site.state_dir == "/data/es-ESS-flows/state"
    assert site.log_file is None  # one log only: standard output, for multilog


def test_service_run_script_execs_the_guardian_with_one_timestamp() -> None:
    run = (ROOT / "install" / "service" / "run").read_text()
    assert "exec 2>&1" in run
    assert "export ESESS_LOG_TIMESTAMPS=0" in run
    assert 'exec "$home/venv/bin/python" "$home/esess-flowctl" run --guardian' in run
    log_run = (ROOT / "install" / "service" / "log" / "run").read_text()
    assert 'exec multilog t s25000 n4 "$dir"' in log_run


def bundle_module() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("bundle", str(ROOT / "scripts" / "bundle"))
    spec = importlib.util.spec_from_loader("bundle", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_bundle_refuses_an_armv7_archive_without_an_rpds_py_wheel(tmp_path: Path) -> None:
    bundle = bundle_module()
    for name in ("rpds_py-2026.9.1-cp312-cp312-manylinux_2_17_x86_64.whl",
                 "aiohttp-3.14.5-cp312-cp312-manylinux2014_armv7l.whl",
                 "pyyaml-6.0.4-py3-none-any.whl"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(SystemExit) as exc:
        bundle.check(tmp_path, "3.12", [], armv7=True)
    message = str(exc.value)
    assert "need an armv7 wheel" in message
    assert "rpds-py: Rust, no pure-Python fallback" in message
    assert "multidict: not in the archive at all" in message


def test_bundle_needs_armv7_wheels_of_the_packages_without_a_fallback() -> None:
    assert {"rpds-py", "bcrypt", "aiohttp", "multidict", "yarl", "frozenlist"} <= set(
        bundle_module().NEEDS_ARMV7)
    assert set(bundle_module().PURE_BUILDS) == {"pyyaml", "dbus-fast"}
