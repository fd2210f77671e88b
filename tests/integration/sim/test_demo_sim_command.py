"""`esess-flowctl sim`: the simulated site alone, with the addresses for `run` elsewhere."""

from __future__ import annotations

import asyncio
import os
import re
import sys

from conftest import ROOT, run
from testkit.dbus import VictronClient

ADDRESS = re.compile(r"export DBUS_SYSTEM_BUS_ADDRESS='([^']+)'")


def test_sim_prints_the_bus_address_where_venus_os_answers() -> None:
    async def scenario() -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "flowengine.cli", "sim", "--duration", "6", cwd=ROOT,
            env=dict(os.environ), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        assert proc.stdout is not None
        lines: list[str] = []
        address = None
        async with asyncio.timeout(30):
            while address is None:
                line = (await proc.stdout.readline()).decode()
                assert line, "".join(lines)
                lines.append(line)
                found = ADDRESS.search(line)
                address = found.group(1) if found else None
            async with VictronClient(address) as client:
                soc = await client.value("com.victronenergy.system", "/Dc/Battery/Soc")
                assert 0 < soc < 100
            rest = (await proc.stdout.read()).decode()
            assert await proc.wait() == 0, "".join(lines) + rest
        text = "".join(lines) + rest
        port = re.search(r"connections: \{mqtt: \{main: \{host: 127.0.0.1, port: (\d+)\}", text)
        assert port, text
        assert (f"local: {{host: 127.0.0.1, port: {port.group(1)}, status_topic: null}}}}}}"
                in text)  # the GX's own broker, which shipped flows use too
        assert "[sim] " in rest and "simulator stopped" in rest
    run(scenario())
