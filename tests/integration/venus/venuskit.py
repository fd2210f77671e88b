"""A fake GX for the installer: /data, /service and the logs under one temporary root.

The installer scripts honour ESESS_* paths, so a test unpacks the release archive into
`<root>/data`, runs install.sh with `env()`, and may start Debian's daemontools `svscan`
on `<root>/service` as Venus OS does. `kill_everything_under()` ends every process
whose command line names the root (supervise, the guardian, the runtime, multilog),
so a failed test leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)  # outside any venv
DAEMONTOOLS = ("svscan", "svc", "svok", "svstat", "multilog")


def build_host_bundle(out: Path) -> Path:
    """scripts/bundle --host: the release archive with wheels for this machine.

    The timeout only guards against a hang: on a clean machine pip builds the pure
    wheels from sdists with nothing cached (28 s here with pip's cache cold, 7 s warm)."""
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bundle"), "--host",
                             "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return Path(result.stdout.strip().splitlines()[-1])


def offline_pip_env() -> dict[str, str]:
    """pip with no configured index or find-links and no way out: --no-index must do."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    dead = "http://127.0.0.1:9"
    env.update(PIP_CONFIG_FILE=os.devnull, http_proxy=dead, https_proxy=dead,
               HTTP_PROXY=dead, HTTPS_PROXY=dead, no_proxy="", NO_PROXY="")
    return env


class FakeGx:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.home = self.data / "es-ESS-flows"
        self.old_home = self.data / "es-ESS"
        self.service_dir = root / "service"
        self.log_dir = self.data / "log" / "es-ESS-flows"
        self.rc_local = self.data / "rc.local"
        self.link = self.service_dir / "es-ESS-flows"
        self.svscan: subprocess.Popen[bytes] | None = None
        self.service_dir.mkdir(parents=True, exist_ok=True)

    def unpack(self, archive: Path) -> None:
        with tarfile.open(archive) as tar:
            tar.extractall(self.data, filter="tar")

    def env(self) -> dict[str, str]:
        return dict(offline_pip_env(), ESESS_RC_LOCAL=str(self.rc_local),
                    ESESS_SERVICE_DIR=str(self.service_dir), ESESS_OLD_HOME=str(self.old_home),
                    ESESS_LOG_DIR=str(self.log_dir), PYTHON=BASE_PYTHON)

    def sh(self, *command: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(c) for c in command], env=self.env(), capture_output=True,
                              text=True, timeout=timeout)

    def install(self, *options: str) -> subprocess.CompletedProcess[str]:
        return self.sh("bash", self.home / "install" / "install.sh", *options)

    def flowctl(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return self.sh(self.home / "venv" / "bin" / "python", self.home / "esess-flowctl", *args)

    # -- daemontools ---------------------------------------------------------------------

    def start_svscan(self) -> None:
        require_daemontools()
        self.svscan = subprocess.Popen(["svscan", str(self.service_dir)], env=self.env(),
                                       cwd=self.root, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True)

    def svstat(self, service: Path) -> str:
        return self.sh("svstat", service, timeout=10).stdout.strip()

    def service_pid(self, service: Path) -> int | None:
        found = re.search(r": up \(pid (\d+)\)", self.svstat(service))
        return int(found.group(1)) if found else None

    def processes(self) -> dict[int, str]:
        """pid -> command line of every live process that names this root."""
        return processes_naming(str(self.root))

    def stop_everything(self) -> None:
        """svc -dx on every service (and log service), then end svscan and the rest."""
        if shutil.which("svc"):
            for service in self.service_dir.iterdir():
                for target in (service, service / "log"):
                    if (target / "supervise").is_dir():
                        subprocess.run(["svc", "-dx", str(target)], capture_output=True,
                                       timeout=10, check=False)
            wait_for(lambda: not any("supervise" in c for c in self.processes().values()),
                     timeout=12, what="", fail=False)
        if self.svscan is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.svscan.pid, signal.SIGKILL)
            self.svscan.wait(10)
            self.svscan = None
        kill_everything_under(str(self.root))


def processes_naming(text: str) -> dict[int, str]:
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        if text in cmdline and stat[stat.rindex(")") + 2] != "Z":
            found[int(proc.name)] = cmdline
    return found


def kill_everything_under(text: str) -> None:
    for pid in processes_naming(text):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def require_daemontools() -> None:
    if all(shutil.which(p) for p in DAEMONTOOLS):
        return
    subprocess.run([str(ROOT / "scripts" / "system-deps"), *DAEMONTOOLS], check=False,
                   timeout=300)
    missing = [p for p in DAEMONTOOLS if not shutil.which(p)]
    if missing:
        pytest.fail(f"daemontools is not installed ({', '.join(missing)} missing): run "
                    "scripts/system-deps, or `sudo apt-get install daemontools`", pytrace=False)


def wait_for(condition: Callable[[], object], *, timeout: float, what: str,
             fail: bool = True) -> bool:
    """Poll an outside process's effect (a pid, a file) until `condition` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    if condition():
        return True
    if fail:
        raise AssertionError(f"not within {timeout:g} s: {what}")
    return False
