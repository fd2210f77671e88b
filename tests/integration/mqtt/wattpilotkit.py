"""Running `energy.wattpilot` against the Wattpilot simulator, a real mosquitto and a
private bus: `charger(...)` yields a `Rig` with the simulator, the flow, a test client
playing the distributor (it sees the request and sends allowances) and a VRM-like D-Bus
client."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import eventually
from dbus_fast import Variant
from testkit.dbus import VictronClient
from testkit.mqtt import Listener

from flowengine.runtime import FlowRun, Runtime
from nodes.dbus.daemon import PrivateBus
from sim.devices.wattpilot import WattpilotSim

from .mqttkit import Mosquitto, client, running

__all__ = ["REQ", "SERVICE", "Rig", "charger"]

SERVICE = "com.victronenergy.evcharger.esESS_FroniusWattpilot"
REQ = "es-ESS/SolarOverheadDistributor/Requests/Wattpilot/"
MIRROR = "es-ESS/FroniusWattpilot"
PASSWORD = "wallbox secret"


@dataclass
class Rig:
    wp: WattpilotSim
    runtime: Runtime
    flow: FlowRun
    mqtt: Listener
    vrm: VictronClient

    async def value(self, path: str) -> Any:
        return await self.vrm.value(SERVICE, path)

    async def until(self, path: str, ok: Callable[[Any], bool] | Any,
                    timeout: float = 10) -> Any:
        """The service's value of `path` once it is `ok` (a predicate or a value)."""
        check = ok if callable(ok) else (lambda v: v == ok)
        seen: list[Any] = []

        async def probe() -> bool:
            try:
                seen.append(await self.value(path))
            except AssertionError as exc:  # not on the bus yet
                seen.append(f"absent ({exc})")
                return False
            return bool(check(seen[-1]))

        deadline = asyncio.get_running_loop().time() + timeout
        while not await probe():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{path}: last value {seen[-1]!r}")
            await asyncio.sleep(0.05)
        return seen[-1]

    async def set(self, path: str, signature: str, value: Any) -> int:
        return await self.vrm.set_value(SERVICE, path, Variant(signature, value))

    def setting(self, key: str) -> Any:
        return self.wp.state.settings[key]

    async def setting_is(self, key: str, value: Any, timeout: float = 10) -> None:
        try:
            await eventually(lambda: self.wp.state.settings[key] == value, timeout)
        except AssertionError:
            raise AssertionError(f"{key}: {self.wp.state.settings[key]!r}, wanted "
                                 f"{value!r}; writes {self.wp.writes}") from None

    def allow(self, watts: float) -> None:
        self.mqtt.broker.publish(REQ + "Allowance", f"{watts:g}", qos=1)

    def request(self, name: str) -> str | None:
        return self.mqtt.last(REQ + name)

    def status(self) -> str:
        return self.flow.runners["wattpilot"].status.text


def flow_yaml(port: int, **options: object) -> str:
    extra = "".join(f"\n            {k}: {v}" for k, v in options.items())
    return f"""
        id: wp
        nodes:
          - id: wattpilot
            type: energy.wattpilot
            host: 127.0.0.1
            port: {port}
            password: "{PASSWORD}"
            vrm_instance: 1007{extra}
            to: [mirror]
          - {{id: mirror, type: mqtt.out, topic: "{MIRROR}{{topic}}"}}
    """


@contextlib.asynccontextmanager
async def charger(server: Mosquitto, directory: Path, *, sim: dict[str, Any] | None = None,
                  wait: bool = True, **options: object) -> AsyncIterator[Rig]:
    """The simulator (`sim` its options), the node (`options`), the clients; with `wait`
    once the service shows the charger connected."""
    with PrivateBus() as address:
        saved = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = address
        try:
            async with WattpilotSim(**{"password": PASSWORD, **(sim or {})}) as wp, \
                    client(server, f"distributor-{directory.name}") as mqtt, \
                    VictronClient(address) as vrm:
                mqtt.listen(REQ + "#")
                mqtt.listen(MIRROR + "/#")
                async with running(flow_yaml(wp.port, **options), server,
                                   directory) as (runtime, flow_run):
                    rig = Rig(wp, runtime, flow_run, mqtt, vrm)
                    if wait:
                        await rig.until("/Connected", 1)
                    yield rig
        finally:
            if saved is None:
                os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
            else:
                os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = saved
