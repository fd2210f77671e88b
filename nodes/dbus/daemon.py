"""PrivateBus: a dbus-daemon of our own, for tests, the demo and the simulator.

    async with PrivateBus() as address:          # "unix:path=/tmp/esess-bus-.../bus,guid=..."
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = address
        ...

The daemon gets a generated config (any local user may own any name and talk to
anyone, as on a GX where everything runs as root) and listens on a unix socket in a
temporary directory. It is always stopped and the directory removed on exit, also
when the body raises. `with PrivateBus()` does the same for synchronous callers
(pytest fixtures). It never touches the machine's own system bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

__all__ = ["DaemonMissing", "PrivateBus", "find_daemon"]

START_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 2.0

_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>esess-private</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
  <limit name="max_incoming_bytes">134217728</limit>
  <limit name="max_outgoing_bytes">134217728</limit>
  <limit name="max_message_size">33554432</limit>
  <limit name="max_replies_per_connection">50000</limit>
  <limit name="max_match_rules_per_connection">50000</limit>
  <limit name="reply_timeout">10000</limit>
</busconfig>
"""


class DaemonMissing(RuntimeError):
    """dbus-daemon is not installed; the message says what to install."""


def find_daemon() -> str:
    """The dbus-daemon executable, or DaemonMissing with what to install."""
    found = shutil.which("dbus-daemon") or next(
        (p for p in ("/usr/bin/dbus-daemon", "/bin/dbus-daemon") if os.access(p, os.X_OK)), None)
    if found is None:
        raise DaemonMissing("dbus-daemon not found; install it (Debian/Ubuntu: "
                            "apt-get install dbus-daemon, Fedora: dnf install dbus-daemon) "
                            "or run scripts/system-deps")
    return found


class PrivateBus:
    """A private dbus-daemon on a unix socket in a temp dir; `address` once started."""

    def __init__(self) -> None:
        self.address = ""
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._log = Path(os.devnull)  # the daemon's stderr (its complaints), in the temp dir

    def _prepare(self) -> list[str]:
        daemon = find_daemon()
        self._dir = tempfile.TemporaryDirectory(prefix="esess-bus-")
        root = Path(self._dir.name)
        self._log = root / "daemon.log"
        config = root / "bus.conf"
        config.write_text(_CONFIG.format(socket=root / "bus"), encoding="utf-8")
        return [daemon, f"--config-file={config}", "--nofork", "--nopidfile",
                "--print-address=1", "--nosyslog"]

    def _started(self, line: bytes) -> str:
        address = line.decode().strip()
        if not address.startswith("unix:"):
            said = self._log.read_text(errors="replace").strip() if self._log.exists() else ""
            raise RuntimeError(f"dbus-daemon did not start: {said or address or 'no address'}")
        self.address = address
        return address

    # -- asyncio ------------------------------------------------------------------------------
    async def __aenter__(self) -> str:
        try:
            command = self._prepare()
            with self._log.open("wb") as log:
                self._proc = await asyncio.create_subprocess_exec(
                    *command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
            assert self._proc.stdout is not None
            async with asyncio.timeout(START_TIMEOUT_S):
                line = await self._proc.stdout.readline()
            return self._started(line)
        except BaseException:
            await self._astop()
            raise

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._astop()

    async def _astop(self) -> None:
        proc, self._proc = self._proc, None
        try:
            if proc is not None and proc.returncode is None:
                proc.terminate()
                try:
                    async with asyncio.timeout(STOP_TIMEOUT_S):
                        await proc.wait()
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        finally:
            self._cleanup()

    # -- synchronous (fixtures) -----------------------------------------------------------------
    def __enter__(self) -> str:
        try:
            command = self._prepare()
            with self._log.open("wb") as log:
                self._popen = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                               stdout=subprocess.PIPE, stderr=log)
            assert self._popen.stdout is not None
            ready, _, _ = select.select([self._popen.stdout], [], [], START_TIMEOUT_S)
            return self._started(self._popen.stdout.readline() if ready else b"")
        except BaseException:
            self._stop()
            raise

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop()

    def _stop(self) -> None:
        proc, self._popen = self._popen, None
        try:
            if proc is not None:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(STOP_TIMEOUT_S)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                if proc.stdout is not None:
                    proc.stdout.close()
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        self.address = ""
        if self._dir is not None:
            with contextlib.suppress(OSError):
                self._dir.cleanup()
            self._dir = None
