"""`esess-flowctl run site.yaml` in a subprocess, as a user starts it on a GX."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

from conftest import ROOT

__all__ = ["Runner", "site"]


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

    async def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        """Send `sig`; the exit code and everything the runtime wrote."""
        assert self.proc is not None and self.proc.stdout is not None
        self.proc.send_signal(sig)
        out = await asyncio.wait_for(self.proc.stdout.read(), 15)
        return await asyncio.wait_for(self.proc.wait(), 15), out.decode()
