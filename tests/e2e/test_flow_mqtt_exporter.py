"""Shipped flow mqtt-exporter, end to end: `esess-flowctl run` on a site file, a private
dbus-daemon with the simulated Venus OS, a real mosquitto, and MQTT clients reading what
a user's dashboard would read."""

from __future__ import annotations

import contextlib
import json
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from conftest import eventually, run
from dbus_fast.aio import MessageBus
from testkit.dbus import value
from testkit.flowctl import Runner, site
from testkit.mosquitto import Mosquitto
from testkit.mqtt import Listener, client

from nodes.dbus.daemon import PrivateBus
from sim import mixed_phases_noon
from sim.venus import SimVenus

SYSTEM = "com.victronenergy.system"
BATTERY = "com.victronenergy.battery.ttyS7"
GRID = ["/Ac/Grid/L1/Power", "/Ac/Grid/L2/Power", "/Ac/Grid/L3/Power"]
FLOWS = textwrap.dedent(f"""\
    flows:
      - use: mqtt-exporter
        instance: grid
        vars: {{service: {SYSTEM}, paths: [{", ".join(GRID)}], topic: "es-ESS/Grid/*"}}
      - use: mqtt-exporter
        instance: soc
        vars: {{service: {SYSTEM}, paths: [/Dc/Battery/Soc], topic: home/soc}}
      - use: mqtt-exporter
        instance: battery
        vars: {{service: "com.victronenergy.battery.*", device_instance: 512,
                paths: {{soc: /Soc, power: /Dc/0/Power}}, topic: "home/battery/{{topic}}"}}
      - use: mqtt-exporter
        instance: named
        vars: {{service: {SYSTEM}, paths: {{pv: /Dc/Pv/Power}}, topic: "es-ESS/Named/*"}}
      - use: mqtt-exporter
        instance: voltage
        vars: {{service: "com.victronenergy.battery.*", paths: [/Dc/0/Voltage]}}
""")


@dataclass
class Site:
    venus: SimVenus
    bus: MessageBus  # a D-Bus client, to read what the services say
    server: Mosquitto
    runner: Runner
    address: str


@contextlib.asynccontextmanager
async def exporting(tmp_path: Path) -> AsyncIterator[Site]:
    """The simulated GX at noon, a broker, and the runtime exporting FLOWS to it."""
    server = Mosquitto(tmp_path)
    server.start()
    try:
        main = f"{{host: {server.host}, port: {server.port}}}"
        path = site(tmp_path, f"state_dir: {tmp_path / 'state'}\n"
                              f"connections: {{mqtt: {{main: {main}}}}}\n" + FLOWS)
        with PrivateBus() as address:
            async with SimVenus(mixed_phases_noon(seed=3, settle_s=60),
                                address=address) as venus:
                bus = await MessageBus(bus_address=address).connect()
                runner = Runner(path, address)
                await runner.start()
                try:  # a runtime a failed test leaves running is killed by conftest
                    yield Site(venus, bus, server, runner, address)
                finally:
                    bus.disconnect()
    finally:
        server.stop()


async def retained_copy(server: Mosquitto, topics: list[str]) -> Listener:
    """A client subscribing now, once it holds a message on every one of `topics`."""
    async with client(server, "late") as late:
        late.listen("#")
        await eventually(lambda: all(late.payloads(t) for t in topics), timeout=5)
        return late


def plain(got: object) -> str:
    """The payload a D-Bus value is published as (mqtt.out format plain)."""
    return got if isinstance(got, str) else json.dumps(got)


def test_values_are_published_retained_on_their_topics(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with exporting(tmp_path) as gx:
            expected = {f"es-ESS/Grid/{p[1:]}": (SYSTEM, p) for p in GRID} | {
                "home/soc": (SYSTEM, "/Dc/Battery/Soc"),
                "home/battery/soc": (BATTERY, "/Soc"),
                "home/battery/power": (BATTERY, "/Dc/0/Power"),
                "es-ESS/Named/Dc/Pv/Power": (SYSTEM, "/Dc/Pv/Power"),  # * is the path
                f"es-ESS/MqttExporter/{BATTERY}/Dc/0/Voltage": (BATTERY, "/Dc/0/Voltage")}
            async with client(gx.server, "live") as live:  # until all are published
                live.listen("#")
                await eventually(lambda: all(live.payloads(t) for t in expected), timeout=5)
            late = await retained_copy(gx.server, list(expected))
            for topic, (service, path) in expected.items():
                got = await value(gx.bus, service, path)
                assert got is not None
                assert late.payloads(topic) == [plain(got)], topic
            assert all(r.retained for r in late.received if r.topic in expected)
            exported = {r.topic for r in late.received if not r.topic.startswith("es-ESS/$SYS")}
            assert exported == set(expected)  # nothing else, no `//`
            code, out = await gx.runner.stop()
            assert code == 0, out

    run(scenario())


def test_only_changes_are_published(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with exporting(tmp_path) as gx:
            async with client(gx.server, "live") as live:
                live.listen("home/#")
                await eventually(lambda: live.last("home/soc") is not None, timeout=5)
                soc = await value(gx.bus, SYSTEM, "/Dc/Battery/Soc")
                assert live.payloads("home/soc") == [plain(soc)]
                # the same number again, as an integer: the sim signals it on D-Bus,
                # but the value did not change, so nothing is published
                gx.venus.system.update({"/Dc/Battery/Soc": int(soc)})
                assert int(soc) == soc
                gx.venus.system.update({"/Dc/Battery/Soc": 55.5})
                await eventually(lambda: live.last("home/soc") == "55.5", timeout=5)
                assert live.payloads("home/soc") == [plain(soc), "55.5"]
                assert not any(r.retained for r in live.received[1:])  # live, not replayed
            code, out = await gx.runner.stop()
            assert code == 0, out

    run(scenario())


def test_a_service_that_leaves_the_bus_is_published_as_null(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with exporting(tmp_path) as gx:
            async with client(gx.server, "live") as live:
                live.listen("home/battery/#")
                await eventually(lambda: live.last("home/battery/soc") not in (None, "null"),
                                 timeout=5)
                await gx.venus.battery.close()
                await eventually(lambda: live.last("home/battery/soc") == "null", timeout=5)
                await eventually(lambda: live.last("home/battery/power") == "null", timeout=5)
                late = await retained_copy(gx.server, ["home/battery/soc"])
                assert late.received[0].retained and late.payloads("home/battery/soc") == ["null"]

                await gx.venus.battery.start(gx.address)  # the pattern finds it again
                soc = gx.venus.battery.values["/Soc"]
                await eventually(lambda: live.last("home/battery/soc") == plain(soc), timeout=5)
                assert live.payloads("home/battery/soc")[-3:] == [plain(soc), "null", plain(soc)]
            code, out = await gx.runner.stop()
            assert code == 0, out

    run(scenario())
