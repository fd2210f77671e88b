"""`esess-flowctl run site.yaml` in a subprocess, as a user starts it on a GX."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Mapping
from pathlib import Path

from conftest import ROOT

__all__ = ["Runner", "kill_leftovers", "site"]

_started: list[int] = []  # pids of runtimes started by tests


def collect_quietly() -> None:
    """Collect garbage of a failed test's runtimes here, quietly: their transports warn and
    may raise (their loop is closed) when collected, which would fail the test running then."""
    hook = sys.unraisablehook
    sys.unraisablehook = lambda _unraisable: None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
    finally:
        sys.unraisablehook = hook


def kill_leftovers() -> int:
    """Kill every runtime a test started and did not stop (it failed midway); how many.

    By pid: the test's event loop, which owned the process objects, is closed by now."""
    killed = 0
    while _started:
        pid = _started.pop()
        with contextlib.suppress(OSError):  # gone already
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat[stat.rindex(")") + 2] != "Z":  # not exited (asyncio's watcher reaps)
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


def site(directory: Path, text: str) -> Path:
    """Write a site file (dedented) into `directory`."""
    path = directory / "site.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


class Runner:
    """The runtime on a site file, on the bus at `address`; `secrets` name -> value."""

    def __init__(self, site_file: Path, address: str, *,
                 secrets: Mapping[str, str] | None = None) -> None:
        self.site, self.address = site_file, address
        self.secrets = dict(secrets or {})
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.address, PYTHONPATH=str(ROOT))
        env.update({f"ESESS_SECRET_{k.upper()}": v for k, v in self.secrets.items()})
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "esess-flowctl"), "run", str(self.site), env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        _started.append(self.proc.pid)

    async def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        """Send `sig`; the exit code and everything the runtime wrote."""
        assert self.proc is not None and self.proc.stdout is not None
        self.proc.send_signal(sig)
        out = await asyncio.wait_for(self.proc.stdout.read(), 15)
        return await asyncio.wait_for(self.proc.wait(), 15), out.decode()
