"""The release archive installs with pip --no-index and runs: scripts/bundle --host.

The archive for a GX (armv7) is built the same way by scripts/bundle and proven under
emulation by scripts/test-armv7, which is too slow for this suite.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .venuskit import ROOT, FakeGx


@pytest.fixture(scope="module")
def installed(host_bundle: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[FakeGx, subprocess.CompletedProcess[str]]:
    """The archive unpacked into a fresh /data and installed (read by the tests below)."""
    gx = FakeGx(tmp_path_factory.mktemp("gx"))
    gx.unpack(host_bundle)
    return gx, gx.install()


def test_bundle_installs_offline_and_validates_every_shipped_flow(
        installed: tuple[FakeGx, subprocess.CompletedProcess[str]]) -> None:
    gx, result = installed
    assert result.returncode == 0, result.stdout + result.stderr
    assert "installing the Python packages from" in result.stdout

    shipped = sorted(p.name for p in (ROOT / "flows").glob("*.yaml"))
    files = [gx.home / "flows" / name for name in shipped]
    checked = gx.flowctl("validate", *files, gx.home / "site.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("ok: flow") == len(shipped)


def test_the_installed_environment_knows_the_project_version(
        installed: tuple[FakeGx, subprocess.CompletedProcess[str]]) -> None:
    """A metadata-only wheel: VRM's /FirmwareVersion of our D-Bus services is the release."""
    import flowengine

    gx, _ = installed
    probe = gx.sh(gx.home / "venv" / "bin" / "python", "-c",
                  "import importlib.metadata as m; print(m.version('esess-flows'))")
    assert probe.stdout.strip() == flowengine.__version__, probe.stderr
    assert not (gx.home / "venv" / "bin" / "esess-flowctl").exists()  # the code runs from home


def test_bundle_ships_pure_python_builds_where_the_c_part_is_optional(
        installed: tuple[FakeGx, subprocess.CompletedProcess[str]]) -> None:
    """PyYAML and dbus-fast have no armv7 wheel: the archive holds pure builds of both."""
    gx, _ = installed
    wheels = sorted(p.name for p in (gx.home / "wheels").glob("*.whl"))
    assert [w for w in wheels if w.startswith(("pyyaml-", "dbus_fast-"))] == [
        w for w in wheels if w.startswith(("pyyaml-", "dbus_fast-")) and
        w.endswith("-py3-none-any.whl")]
    probe = gx.sh(gx.home / "venv" / "bin" / "python", "-c",
                  "import yaml, dbus_fast.message as m; print(yaml.__with_libyaml__, "
                  "m.__file__.endswith('.py'))")
    assert probe.stdout.split() == ["False", "True"], probe.stderr


def test_install_again_reuses_the_environment(
        installed: tuple[FakeGx, subprocess.CompletedProcess[str]]) -> None:
    """At boot (rc.local) nothing is installed again: it takes a moment, not a pip run."""
    gx, _ = installed
    again = gx.install()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "installing" not in again.stdout
    assert gx.rc_local.read_text().count("install.sh") == 1


def test_install_puts_its_boot_line_before_an_exit_in_rc_local(
        installed: tuple[FakeGx, subprocess.CompletedProcess[str]]) -> None:
    """A line after `exit 0` would never run (a pitfall reported on Venus OS)."""
    gx, _ = installed
    gx.rc_local.write_text("#!/bin/bash\nmy-own-thing\nexit 0\n")
    assert gx.install().returncode == 0
    assert gx.rc_local.read_text() == (
        f"#!/bin/bash\nmy-own-thing\n{gx.home}/install/install.sh\nexit 0\n")


def test_install_names_import_ini_with_force_while_the_site_is_the_example(
        installed: tuple[FakeGx, subprocess.CompletedProcess[str]]) -> None:
    gx, _ = installed
    (gx.old_home).mkdir(parents=True, exist_ok=True)
    (gx.old_home / "config.ini").write_text("[Common]\n")
    result = gx.install("--replace-es-ess")  # nothing of it is enabled: nothing to stop
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stopped and disabled" not in result.stdout
    assert (f"{gx.home}/esess-flowctl import-ini --force {gx.old_home}/config.ini"
            in result.stdout)

def test_uninstall_purge_deletes_the_installation_and_its_boot_line(
        installed: tuple[FakeGx, subprocess.CompletedProcess[str]]) -> None:
    """Last in this module: it deletes what the tests above read."""
    gx, _ = installed
    gx.log_dir.mkdir(parents=True, exist_ok=True)
    result = gx.sh("bash", gx.home / "install" / "uninstall.sh", "--purge")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not gx.home.exists() and not gx.log_dir.exists()
    assert not gx.link.is_symlink()
    assert "install.sh" not in gx.rc_local.read_text()
