"""Simulated Shelly devices over real loopback sockets, reading the same `EnergyModel`.

| class | protocol | measures |
| --- | --- | --- |
| `Shelly3EMGen1` | Gen1 HTTP, Basic auth | the grid, per phase |
| `ShellyPro3EM` | Gen2 RPC, SHA-256 digest | the grid, per phase |
| `ShellyPMMiniGen3` | Gen3 RPC, `PM1.GetStatus` | a `Meter` (default: AC PV on L1) |
| `ShellyPlus1PM` | Gen2 RPC, `Switch.*` | a switched `ExtraLoad`, or a `Meter` |
| `ShellyRelayGen1` | Gen1 `/relay/0?turn=` | the `ExtraLoad` it switches |
| `WattpilotSim` | Fronius Wattpilot websocket (`/ws`) | a car it charges (an `ExtraLoad`) |

Every device is an async context manager with `.url`, `.faults` (slow, hang,
garbage, deep, answer, clear) and `go_away()` / `come_back()`; the Wattpilot has
its own faults (`drop`, `silent`, `refuse_writes`, `clear`).
"""

from sim.devices.faults import DEEP_BODY, GARBAGE_BODY, Fault, Faults
from sim.devices.pm import (
    Meter,
    Reading,
    ShellyPlus1PM,
    ShellyPMMiniGen3,
    consumer,
    pv_inverter,
)
from sim.devices.pro3em import ShellyPro3EM
from sim.devices.relay import ShellyRelayGen1
from sim.devices.server import DeviceServer
from sim.devices.shelly3em import Shelly3EMGen1
from sim.devices.wattpilot import WattpilotSim

__all__ = [
    "DEEP_BODY",
    "GARBAGE_BODY",
    "DeviceServer",
    "Fault",
    "Faults",
    "Meter",
    "Reading",
    "Shelly3EMGen1",
    "ShellyPMMiniGen3",
    "ShellyPlus1PM",
    "ShellyPro3EM",
    "ShellyRelayGen1",
    "WattpilotSim",
    "consumer",
    "pv_inverter",
]
