"""A D-Bus service a running runtime follows crashes (SIGKILL) and starts again: its
values become invalid, then are followed again. What the runtime forwards is read on
MQTT, as a dashboard would."""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
from pathlib import Path

from conftest import run
from testkit.mosquitto import Mosquitto
from testkit.mqtt import client
from testkit.process import RuntimeProcess

SERVICE = "com.victronenergy.battery.fault"
SCRIPT = Path(__file__).with_name("battery_service.py")


async def battery(address: str, first_soc: float) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), address, SERVICE, str(first_soc),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 10)
    assert line == b"ready\n", line + await proc.stdout.read()
    return proc


async def crash(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGKILL)
    await proc.wait()


def test_a_crashed_service_turns_invalid_and_is_followed_when_it_returns(
        tmp_path: Path, broker: Mosquitto, bus_address: str) -> None:
    (tmp_path / "flow.yaml").write_text(textwrap.dedent(f"""\
        id: export
        nodes:
          - {{id: battery, type: dbus.source, service: {SERVICE}, paths: {{soc: /Soc}},
             to: [out]}}
          - {{id: out, type: mqtt.out, topic: "fault/{{topic}}"}}
    """), encoding="utf-8")
    path = tmp_path / "site.yaml"
    path.write_text(textwrap.dedent(f"""\
        connections: {{mqtt: {{main: {{host: {broker.host}, port: {broker.port}}}}}}}
        flows: [{{file: flow.yaml}}]
    """), encoding="utf-8")

    async def scenario() -> None:
        first = await battery(bus_address, 20.0)
        runtime = RuntimeProcess(path, tmp_path, env={"DBUS_SYSTEM_BUS_ADDRESS": bus_address})
        try:
            await runtime.start()
            async with client(broker, "dashboard") as listener:
                listener.listen("fault/soc")

                def soc() -> float | None:
                    last = listener.last("fault/soc")
                    return None if last in (None, "null") else float(last)

                def invalid() -> bool:
                    return listener.last("fault/soc") == "null"

                def values() -> set[str]:
                    return set(listener.payloads("fault/soc")) - {"null"}

                await runtime.until(lambda: len(values()) >= 3, 10, "followed (it changes)")
                await crash(first)
                await runtime.until(invalid, 5, "invalid after the crash")
                second = await battery(bus_address, 70.0)
                try:
                    await runtime.until(lambda: (soc() or 0) >= 70.0, 5, "read again")
                    again = len(values())
                    await runtime.until(lambda: len(values()) >= again + 2, 5, "followed again")
                    assert (soc() or 0) > 70.0
                finally:
                    await crash(second)
                await runtime.until(invalid, 5, "invalid after the second crash")
            assert await runtime.stop() == 0, runtime.output()
            log = runtime.output()
            assert "restarting in" not in log and "Traceback" not in log, log
        finally:
            if first.returncode is None:
                await crash(first)

    run(scenario())
