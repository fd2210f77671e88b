"""Shipped flow mqtt-exporter, end to end, against a service that signals every change
twice (PropertiesChanged on its path and ItemsChanged on `/`): each change is published
once on MQTT."""

from __future__ import annotations

import asyncio
from pathlib import Path

from conftest import eventually, run
from dbus_fast import Message, MessageType, NameFlag, Variant
from dbus_fast.aio import MessageBus
from testkit.dbus import BUSITEM
from testkit.flowctl import Runner, site
from testkit.mosquitto import Mosquitto
from testkit.mqtt import client

from nodes.dbus.daemon import PrivateBus

SYSTEM = "com.victronenergy.system"
SOC = "/Dc/Battery/Soc"
NAN = float("nan")


class TwiceSignalling:
    """A service with one path that answers GetItems and signals each change both ways."""

    def __init__(self, address: str, soc: float) -> None:
        self.address, self.soc = address, soc
        self.bus = MessageBus(bus_address=address)

    async def start(self) -> None:
        await self.bus.connect()
        self.bus.add_message_handler(self._answer)
        await self.bus.request_name(SYSTEM, NameFlag.DO_NOT_QUEUE)

    def _item(self) -> dict[str, Variant]:
        return {"Value": Variant("d", self.soc), "Text": Variant("s", f"{self.soc}%")}

    def _answer(self, msg: Message) -> Message | None:
        if msg.message_type is MessageType.METHOD_CALL and msg.member == "GetItems":
            return Message.new_method_return(msg, "a{sa{sv}}", [{SOC: self._item()}])
        return None

    def set(self, soc: float) -> None:
        self.soc = soc
        self.bus.send(Message.new_signal(SOC, BUSITEM, "PropertiesChanged", "a{sv}",
                                         [self._item()]))
        self.bus.send(Message.new_signal("/", BUSITEM, "ItemsChanged", "a{sa{sv}}",
                                         [{SOC: self._item()}]))


def test_a_change_signalled_both_ways_is_published_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        server = Mosquitto(tmp_path)
        server.start()
        try:
            path = site(tmp_path, f"""
                state_dir: {tmp_path / 'state'}
                connections: {{mqtt: {{main: {{host: {server.host}, port: {server.port}}}}}}}
                flows:
                  - use: mqtt-exporter
                    vars: {{service: {SYSTEM}, paths: [{SOC}], topic: home/soc,
                            retain: false}}
            """)
            with PrivateBus() as address:
                system = TwiceSignalling(address, 55.0)
                await system.start()
                runner = Runner(path, address)
                await runner.start()
                async with client(server, "live") as live:
                    live.listen("home/#")
                    system.set(55.5)
                    await eventually(lambda: live.last("home/soc") == "55.5", timeout=10)
                    # one at a time: values that wait for a busy node merge (latest wins)
                    for soc, shown in ((56.0, "56.0"), (NAN, "null"), (NAN, "null"),
                                       (57.0, "57.0")):
                        system.set(soc)
                        await eventually(lambda s=shown: live.last("home/soc") == s, timeout=5)
                    await asyncio.sleep(0.3)  # a second copy would be here by now
                    assert live.payloads("home/soc")[-4:] == ["55.5", "56.0", "null", "57.0"]
                    assert live.payloads("home/soc").count("55.5") == 1
                code, out = await runner.stop()
                assert code == 0, out
                system.bus.disconnect()
        finally:
            server.stop()

    run(scenario())
