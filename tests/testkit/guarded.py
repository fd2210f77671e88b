"""`esess-flowctl run --guardian` in a subprocess: the guardian and its runtime child.

The test node types (tests/plugins/testnodes.py) reach the subprocess as a real
plugin: an entry point of group "esess.nodes" in a dist-info directory on its
PYTHONPATH, as a pip-installed plugin would have.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from conftest import PLUGINS, ROOT

__all__ = ["Guarded", "plugin_path", "rss_kb"]

_STARTED = re.compile(r"runtime started \(pid (\d+)\)")


def plugin_path(directory: Path) -> str:
    """A PYTHONPATH entry that makes the test node types an installed plugin."""
    info = directory / "esess_testnodes-0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: esess-testnodes\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[esess.nodes]\ntest = testnodes\n")
    return os.pathsep.join((str(directory), str(PLUGINS), str(ROOT)))


def rss_kb(pid: int) -> int:
    """Resident memory of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(f"no VmRSS for pid {pid}")


class Guarded:
    """The guardian (`proc`) running `run --guardian FILE`; its output collected in
    `lines` as it comes."""

    def __init__(self, file: Path, *, address: str | None, state_dir: Path, plugins: str,
                 args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 command: Sequence[str] | None = None) -> None:
        self.file, self.address, self.state_dir = file, address, state_dir
        self.plugins, self.args = plugins, list(args)
        self.env = dict(env or {})
        self.command = list(command) if command is not None else None
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=self.plugins, **self.env)
        if self.address is not None:
            env["DBUS_SYSTEM_BUS_ADDRESS"] = self.address
        command = self.command or [
            sys.executable, str(ROOT / "esess-flowctl"), "run", "--guardian",
            "--state-dir", str(self.state_dir), *self.args, str(self.file)]
        self.proc = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def runtime_pids(self) -> list[int]:
        return [int(m.group(1)) for line in self.lines if (m := _STARTED.search(line))]

    async def wait_for(self, text: str, timeout: float = 10.0, *, after: int = 0) -> int:
        """Index of the first line from `after` on that contains `text`."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(after, len(self.lines)):
                if text in self.lines[i]:
                    return i
            if time.monotonic() > deadline:
                raise AssertionError(f"no line with {text!r} within {timeout} s:\n"
                                     + self.output[-4000:])
            await asyncio.sleep(0.02)

    async def runtime_pid(self, timeout: float = 10.0, *, other_than: int | None = None) -> int:
        deadline = time.monotonic() + timeout
        while True:
            pids = [p for p in self.runtime_pids() if p != other_than]
            if pids:
                return pids[-1]
            if time.monotonic() > deadline:
                raise AssertionError("the guardian started no runtime:\n" + self.output)
            await asyncio.sleep(0.02)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send `sig` to the guardian; its exit code once it and its output ended."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, timeout)
        return code

    def kill_all(self) -> None:
        """SIGKILL the guardian and every runtime it started (a power loss, for us)."""
        for pid in [*self.runtime_pids(), self.proc.pid if self.proc else None]:
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    async def __aenter__(self) -> Guarded:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.kill_all()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.proc.wait(), 5)
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
