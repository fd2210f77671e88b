"""Shipped flows shelly3em-grid and shellypm-inverter, end to end: `esess-flowctl run` on a
site file, a private dbus-daemon, simulated Shellys over HTTP, and a Victron-style client
reading the services as VRM would."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
from conftest import run
from dbus_fast.aio import MessageBus
from testkit.dbus import VictronClient, value, wait_for
from testkit.flowctl import Runner, site

from nodes.dbus.daemon import PrivateBus
from sim import EnergyModel, mixed_phases_noon
from sim.devices import Shelly3EMGen1, ShellyPMMiniGen3, pv_inverter
from sim.driver import ModelDriver

PASSWORD = "grid-pass"


def noon() -> EnergyModel:
    """Full battery at noon, an oven on L1: L1 imports while L2 and L3 export."""
    return mixed_phases_noon(seed=3, settle_s=60)


def test_grid_meter_gross_and_net_offline_and_totals_across_a_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        model = noon()
        grid = model.snapshot.grid_l
        assert grid[0] > 0 and grid[1] < 0  # phases disagree: gross and net must differ
        net_sign = 1 if sum(grid) > 0 else -1
        async with Shelly3EMGen1(model, password=PASSWORD) as shelly:
            host = shelly.url.removeprefix("http://")
            path = site(tmp_path, f"""
                state_dir: {tmp_path / 'state'}
                flows:
                  - use: shelly3em-grid
                    instance: gross
                    vars: {{host: "{host}", password: !secret shelly, poll_ms: 100,
                            service_name: gross, vrm_instance: 40}}
                  - use: shelly3em-grid
                    instance: net
                    vars: {{host: "{host}", password: !secret shelly, poll_ms: 100,
                            metering: net, service_name: net, vrm_instance: 41}}
            """)
            with PrivateBus() as address:
                bus = await MessageBus(bus_address=address).connect()
                runner = Runner(path, address, secrets={"shelly": PASSWORD})
                await runner.start()
                gross, net = "com.victronenergy.grid.gross", "com.victronenergy.grid.net"
                l1 = await wait_for(bus, gross, "/Ac/L1/Power", lambda v: v not in ("absent", None))
                assert l1 == pytest.approx(grid[0], abs=0.1)
                assert await value(bus, gross, "/ProductId") == 45069
                assert await value(bus, gross, "/Connected") == 1
                assert await value(bus, net, "/DeviceInstance") == 41
                await wait_for(bus, gross, "/Ac/Energy/Reverse", lambda v: (v or 0) > 0.0005)
                await wait_for(bus, net, "/Ac/Energy/Forward" if net_sign > 0 else
                               "/Ac/Energy/Reverse", lambda v: (v or 0) > 0.0002)
                # gross counts both ways at once; net only the sum's direction
                assert (await value(bus, gross, "/Ac/Energy/Forward")) > 0
                assert await value(bus, net, "/Ac/Energy/Reverse" if net_sign > 0 else
                                   "/Ac/Energy/Forward") == 0

                shelly.faults.hang()
                await wait_for(bus, gross, "/Connected", lambda v: v == 0)
                assert await value(bus, gross, "/Ac/L1/Power") is None
                assert await value(bus, gross, "/Ac/Power") is None
                shelly.faults.clear()
                await wait_for(bus, gross, "/Connected", lambda v: v == 1)
                before = await value(bus, gross, "/Ac/Energy/Reverse")

                code, out = await runner.stop()
                assert code == 0, out
                assert await value(bus, gross, "/Connected") == "absent"
                assert PASSWORD not in out

                again = Runner(path, address, secrets={"shelly": PASSWORD})
                await again.start()
                restored = await wait_for(bus, gross, "/Ac/Energy/Reverse",
                                          lambda v: v not in ("absent", None))
                assert restored >= before  # kept across the restart, not started from 0
                code, out = await again.stop()
                assert code == 0, out
                bus.disconnect()

    run(scenario())


def test_pm_inverter_on_phase_two_at_the_ac_output(tmp_path: Path) -> None:
    async def scenario() -> None:
        model = noon()
        async with ShellyPMMiniGen3(model, meter=pv_inverter(1), password=PASSWORD) as pm:
            host = pm.url.removeprefix("http://")
            path = site(tmp_path, f"""
                state_dir: {tmp_path / 'state'}
                flows:
                  - use: shellypm-inverter
                    instance: garage
                    vars: {{host: "{host}", password: !secret shelly, phase: 2, position: 1,
                            poll_ms: 100, service_name: garage, vrm_instance: 61,
                            custom_name: Garage roof}}
            """)
            with PrivateBus() as address:
                bus = await MessageBus(bus_address=address).connect()
                runner = Runner(path, address, secrets={"shelly": PASSWORD})
                await runner.start()
                service = "com.victronenergy.pvinverter.garage"
                power = await wait_for(bus, service, "/Ac/L2/Power",
                                       lambda v: v not in ("absent", None))
                assert power == pytest.approx(model.snapshot.pv_ac_l[0], abs=0.1)
                assert await value(bus, service, "/Ac/Power") == pytest.approx(power)
                assert await value(bus, service, "/Ac/L1/Power") in (None, "absent")
                assert await value(bus, service, "/Position") == 1
                assert await value(bus, service, "/CustomName") == "Garage roof"
                assert await value(bus, service, "/ProductId") == 0xA144
                assert (await value(bus, service, "/Ac/Energy/Forward")) > 0
                assert await value(bus, service, "/StatusCode") == 7  # running

                pm.faults.hang()
                await wait_for(bus, service, "/Connected", lambda v: v == 0)
                await wait_for(bus, service, "/StatusCode", lambda v: v == 10)  # error
                assert await value(bus, service, "/Ac/L2/Power") is None
                assert await value(bus, service, "/Ac/Power") is None
                pm.faults.clear()
                await wait_for(bus, service, "/Connected", lambda v: v == 1)
                await wait_for(bus, service, "/StatusCode", lambda v: v == 7)
                code, out = await runner.stop()
                assert code == 0, out
                bus.disconnect()

    run(scenario())


def test_grid_meter_totals_after_a_sigkill_are_the_last_save_and_the_file_is_whole(
        tmp_path: Path) -> None:
    """SIGKILL gives no chance to save: the totals come back as last saved (on the SIGTERM
    before, the periodic save is 5 minutes), from a file that parses."""
    async def scenario() -> None:
        async with Shelly3EMGen1(noon(), password=PASSWORD) as shelly:
            host = shelly.url.removeprefix("http://")
            state = tmp_path / "state"
            path = site(tmp_path, f"""
                state_dir: {state}
                flows:
                  - use: shelly3em-grid
                    vars: {{host: "{host}", password: !secret shelly, poll_ms: 100,
                            service_name: house}}
            """)
            service = "com.victronenergy.grid.house"
            with PrivateBus() as address:
                bus = await MessageBus(bus_address=address).connect()

                async def reverse() -> float:
                    return await wait_for(bus, service, "/Ac/Energy/Reverse",
                                          lambda v: isinstance(v, float))

                first = Runner(path, address, secrets={"shelly": PASSWORD})
                await first.start()
                await wait_for(bus, service, "/Ac/Energy/Reverse",
                               lambda v: isinstance(v, float) and v > 0.0005)
                code, out = await first.stop()
                assert code == 0, out
                [saved_file] = state.rglob("energy.json")
                saved = sum(json.loads(saved_file.read_text())["reverse"].values())
                assert saved > 0.0005

                second = Runner(path, address, secrets={"shelly": PASSWORD})
                await second.start()
                assert saved - 1e-6 <= await reverse() < saved + 0.001
                at_kill = await wait_for(bus, service, "/Ac/Energy/Reverse",
                                         lambda v: isinstance(v, float) and v > saved + 0.001)
                code, _ = await second.stop(signal.SIGKILL)
                assert code == -signal.SIGKILL
                # the file is whole and holds the last save; nothing was set aside
                after_kill = json.loads(saved_file.read_text())
                assert sum(after_kill["reverse"].values()) == pytest.approx(saved)
                assert not list(state.rglob("*.corrupt-*"))

                third = Runner(path, address, secrets={"shelly": PASSWORD})
                await third.start()
                # what the killed run counted since the last save (here seconds, at most
                # the 5-minute save interval) is lost; what was saved is not
                assert saved - 1e-6 <= await reverse() < at_kill
                code, out = await third.stop()
                assert code == 0, out
                assert "set aside" not in out
                bus.disconnect()

    run(scenario())


def test_each_poll_signals_its_powers_and_energy_together(tmp_path: Path) -> None:
    """The energy counted from a poll goes out in the grid service's one ItemsChanged for
    that poll, beside its powers, not in a signal of its own a moment before."""
    async def scenario() -> None:
        model = noon()
        async with Shelly3EMGen1(model) as shelly, ModelDriver(model, interval_s=0.05):
            path = site(tmp_path, f"""
                state_dir: {tmp_path / 'state'}
                flows:
                  - use: shelly3em-grid
                    vars: {{host: "{shelly.url.removeprefix('http://')}", poll_ms: 250}}
            """)
            with PrivateBus() as address:
                runner = Runner(path, address)
                await runner.start()
                try:
                    async with VictronClient(address) as client:
                        service = "com.victronenergy.grid.esESS_Shelly3EMGrid"
                        await wait_for(client.bus, service, "/Ac/Energy/Forward",
                                       lambda v: isinstance(v, float) and v > 0)
                        await client.follow(service)
                        await asyncio.sleep(3.0)  # 12 polls
                        changes = client.changed()
                finally:
                    await runner.stop()
        with_energy = [c for c in changes if "/Ac/Energy/Forward" in c]
        assert len(with_energy) >= 8, changes
        assert all("/Ac/Power" in c for c in with_energy), changes  # none of its own
        assert len(changes) <= 14, changes  # one a poll

    run(scenario())
