"""Shipped flow shelly3em-grid with its Shelly hung, answering garbage and gone: the energy
paths read invalid on D-Bus like power and voltage (as docs/flows/shelly3em-grid.md
promises), and come back with their numbers, not restarted from 0, once it answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from conftest import run
from dbus_fast.aio import MessageBus
from testkit.dbus import value, wait_for
from testkit.flowctl import Runner, site

from nodes.dbus.daemon import PrivateBus
from sim import mixed_phases_noon
from sim.devices import Shelly3EMGen1

SERVICE = "com.victronenergy.grid.house"
ENERGY = ["/Ac/Energy/Forward", "/Ac/Energy/Reverse",
          *(f"/Ac/L{n}/Energy/{d}" for n in (1, 2, 3) for d in ("Forward", "Reverse"))]


def test_energy_paths_are_invalid_while_the_shelly_is_offline(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Shelly3EMGen1(mixed_phases_noon(seed=3, settle_s=60)) as shelly:
            host = shelly.url.removeprefix("http://")
            path = site(tmp_path, f"""
                state_dir: {tmp_path / 'state'}
                flows:
                  - use: shelly3em-grid
                    vars: {{host: "{host}", poll_ms: 100, service_name: house}}
            """)
            with PrivateBus() as address:
                bus = await MessageBus(bus_address=address).connect()
                runner = Runner(path, address)
                await runner.start()

                async def energies() -> dict[str, Any]:
                    return {p: await value(bus, SERVICE, p) for p in ENERGY}

                async def go_away() -> None:
                    await shelly.go_away()

                async def come_back() -> None:
                    await shelly.come_back()

                async def hang() -> None:
                    shelly.faults.hang()

                async def garbage() -> None:
                    shelly.faults.garbage()

                async def clear() -> None:
                    shelly.faults.clear()

                faults: list[tuple[str, Callable[[], Awaitable[None]],
                                   Callable[[], Awaitable[None]]]] = [
                    ("hung", hang, clear), ("garbage", garbage, clear),
                    ("gone", go_away, come_back)]
                await wait_for(bus, SERVICE, "/Ac/Energy/Reverse",
                               lambda v: isinstance(v, float) and v > 0)
                for fault, start, end in faults:
                    before = await energies()
                    assert all(isinstance(v, float) for v in before.values()), (fault, before)
                    await start()
                    await wait_for(bus, SERVICE, "/Connected", lambda v: v == 0)
                    assert await value(bus, SERVICE, "/Ac/L1/Power") is None, fault
                    for energy in ENERGY:  # within one emit interval of the power
                        await wait_for(bus, SERVICE, energy, lambda v: v is None, timeout=3)
                    await end()
                    await wait_for(bus, SERVICE, "/Connected", lambda v: v == 1)
                    for energy in ENERGY:
                        again = await wait_for(bus, SERVICE, energy,
                                               lambda v: isinstance(v, float), timeout=3)
                        assert again >= before[energy], (fault, energy)  # kept, not reset
                code, out = await runner.stop()
                assert code == 0, out
                bus.disconnect()

    run(scenario())
