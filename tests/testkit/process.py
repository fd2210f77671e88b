"""`esess-flowctl run` as a process a fault test can kill, freeze and measure.

Unlike `testkit.flowctl.Runner`, the runtime writes its output to a file, not a pipe,
so a test that runs it for a while (or freezes the reader) never blocks it on a full
pipe; `output()` reads what it wrote so far.

    runtime = RuntimeProcess(site_file, tmp_path, env={"DBUS_SYSTEM_BUS_ADDRESS": address})
    await runtime.start()
    runtime.rss_kb()
    runtime.kill()                 # SIGKILL, as a crash or the watchdog does
    code = await runtime.stop()    # SIGTERM, the exit code
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["RuntimeProcess", "kill_leftovers", "rss_kb"]

ROOT = Path(__file__).resolve().parents[2]
_started: list[int] = []  # pids of runtimes started by tests


def rss_kb(pid: int) -> int:
    """Resident memory of a process (VmRSS), in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"process {pid} has no VmRSS (a zombie?)")


def kill_leftovers() -> int:
    """SIGKILL every runtime a test started and did not stop; how many."""
    killed = 0
    while _started:
        pid = _started.pop()
        with contextlib.suppress(OSError):  # gone already
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat[stat.rindex(")") + 2] != "Z":
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


class RuntimeProcess:
    """One `esess-flowctl run <site>`; its output goes to `<directory>/runtime-<n>.log`.

    Without the guardian (on a GX it is the default): `pid` is the runtime itself, the
    process a test kills, freezes and measures."""

    _count = 0

    def __init__(self, site_file: Path, directory: Path, *,
                 env: Mapping[str, str] | None = None, args: tuple[str, ...] = ()) -> None:
        RuntimeProcess._count += 1
        self.site = site_file
        self.log = directory / f"runtime-{RuntimeProcess._count}.log"
        self.env = dict(env or {})
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    async def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), **self.env)
        with self.log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "esess-flowctl"), "run", str(self.site),
                "--no-guardian", *self.args, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out,
                stderr=asyncio.subprocess.STDOUT)
        _started.append(self.proc.pid)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def rss_kb(self) -> int:
        return rss_kb(self.pid)

    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait for `condition`; fail with `what` and the runtime's output when it does not
        come in time or the runtime exits first."""
        deadline = time.monotonic() + timeout
        while not condition():
            if not self.running():
                raise AssertionError(f"the runtime exited before {what}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout} s: {what}\n{self.output()}")
            await asyncio.sleep(0.01)

    def kill(self) -> None:
        """SIGKILL: no safe state, no flush, as a crash."""
        assert self.proc is not None
        self.proc.kill()

    async def wait(self, timeout: float = 15) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Send `sig` (unless it exited already); the exit code."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        return await self.wait(timeout)
