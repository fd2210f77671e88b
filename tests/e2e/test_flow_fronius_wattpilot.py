"""Shipped flow fronius-wattpilot, end to end: `esess-flowctl run` on a site file with the
solar-overhead-distributor flow beside it, the simulated Venus OS on a private bus with
its model stepping in real time, the Wattpilot simulator as a load of that model, and a
real mosquitto. Solar surplus reaches the car through the distributor; SIGTERM and
kill -9 (the guardian) stop the charging; no-bat-to-ev reads the Wattpilot's power."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

from conftest import eventually, run
from dbus_fast.aio import MessageBus
from testkit.dbus import value, wait_for
from testkit.flowctl import Runner, site
from testkit.guarded import Guarded, plugin_path
from testkit.mosquitto import Mosquitto

from nodes.dbus.daemon import PrivateBus
from sim import EnergyModel
from sim.devices.wattpilot import WattpilotSim
from sim.driver import ModelDriver
from sim.model import ModelParams
from sim.profiles import LoadProfile, PvProfile
from sim.venus import SimVenus

SERVICE = "com.victronenergy.evcharger.esESS_FroniusWattpilot"
FAKE_BMS = "com.victronenergy.battery.esESS_SolarOverheadConsumer_Wattpilot"
PASSWORD = "car park"
FLAT_HOUSE = LoadProfile(shape=((0.0, 500.0), (24.0, 500.0)), noise=0.0, spike_chance=0.0)


def model(*, hour: float, pv_ac_w: float = 0.0) -> EnergyModel:
    return EnergyModel(ModelParams(
        start_hour=hour, load=FLAT_HOUSE, initial_soc=50.0,
        pv_ac=PvProfile(peak_w=pv_ac_w, clouds=0.0, sunrise_h=0.0, sunset_h=24.0),
        pv_dc=PvProfile(peak_w=0.0, clouds=0.0, sunrise_h=0.0, sunset_h=24.0)))


def flows(wp: WattpilotSim, *extra: str) -> str:
    return "\n".join((
        "  - use: solar-overhead-distributor",
        "    vars: {reservation: '0', cycle_s: 2}",
        "  - use: fronius-wattpilot",
        f"    vars: {{host: 127.0.0.1, port: {wp.port}, password: {PASSWORD!r},",
        "           vrm_instance: 1007, overhead_vrm_instance: 1006,",
        "           min_on_off_s: 0, min_phase_switch_s: 0, announce_s: 1}", *extra))


@contextlib.asynccontextmanager
async def gx(tmp_path: Path, m: EnergyModel
             ) -> AsyncIterator[tuple[WattpilotSim, Path, str, MessageBus]]:
    """mosquitto, the simulated Venus OS stepping in real time, the Wattpilot (a load of
    the model, in Eco mode with its own PV start out of reach) and a bus client."""
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        with PrivateBus() as address:
            async with SimVenus(m, address=address), ModelDriver(m, interval_s=0.2), \
                    WattpilotSim(password=PASSWORD, model=m) as wp:
                wp.app_set("lmo", 4)
                wp.app_set("fst", 99000.0)
                bus = MessageBus(bus_address=address)
                await bus.connect()
                path = site(tmp_path, "\n".join((
                    f"state_dir: {tmp_path / 'state'}",
                    "connections:",
                    f"  mqtt: {{main: {{host: {broker.host}, port: {broker.port}}}}}",
                    "  setpoint: {default: {default_w: 0, interval_ms: 200}}",
                    "flows:", flows(wp, *(() if m.params.pv_ac.peak_w else (
                        "  - use: no-bat-to-ev", "    vars: {interval_ms: 500}"))), "")))
                try:
                    yield wp, path, address, bus
                finally:
                    bus.disconnect()
    finally:
        broker.stop()


def test_solar_surplus_charges_the_car_and_sigterm_stops_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        m = model(hour=12.0, pv_ac_w=6000.0)
        async with gx(tmp_path, m) as (wp, path, address, bus):
            wp.plug_in(soc=40)
            runner = Runner(path, address)
            await runner.start()
            try:
                await wait_for(bus, SERVICE, "/Status", lambda v: v == 2, timeout=30)
                assert wp.state.settings["frc"] == 2
                assert wp.state.power_w > 1380  # at least 6 A
                assert await value(bus, SERVICE, "/Mode") == 1
                assert await value(bus, FAKE_BMS, "/DeviceInstance") == 1006
                await wait_for(bus, SERVICE, "/Ac/Power", lambda v: v == wp.state.power_w)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{(await runner.stop())[1]}") from None
            assert runner.proc is not None
            runner.proc.send_signal(signal.SIGTERM)
            start = time.monotonic()
            await eventually(lambda: wp.state.settings["frc"] == 1, timeout=1.0)
            took = time.monotonic() - start
            assert runner.proc.stdout is not None
            out = (await asyncio.wait_for(runner.proc.stdout.read(), 15)).decode()
            assert await asyncio.wait_for(runner.proc.wait(), 15) == 0, out
            assert took < 1.0 and wp.state.power_w == 0.0, out
            assert PASSWORD not in out and wp.password_hash not in out
    run(scenario())


def test_kill_9_the_guardian_stops_the_charging(tmp_path: Path) -> None:
    async def scenario() -> None:
        m = model(hour=12.0, pv_ac_w=6000.0)
        async with gx(tmp_path, m) as (wp, path, address, bus):
            wp.plug_in(soc=40)
            async with Guarded(path, address=address, state_dir=tmp_path / "state",
                               plugins=plugin_path(tmp_path / "plugins")) as g:
                first = await g.runtime_pid()
                await wait_for(bus, SERVICE, "/Status", lambda v: v == 2, timeout=30)
                await g.wait_for("holding for fronius-wattpilot/wattpilot: Wattpilot",
                                 timeout=5)
                os.kill(first, signal.SIGKILL)
                await eventually(lambda: wp.state.settings["frc"] == 1, timeout=10)
                await g.wait_for("fronius-wattpilot/wattpilot: applied Wattpilot")
                assert await g.stop() == 0
            assert wp.password_hash not in g.output and PASSWORD not in g.output
    run(scenario())


def test_no_bat_to_ev_reads_the_wattpilots_power(tmp_path: Path) -> None:
    async def scenario() -> None:
        m = model(hour=22.0)  # night: the car charges from the grid, not the battery
        async with gx(tmp_path, m) as (wp, path, address, bus):
            wp.app_set("lmo", 3)  # manual mode: the charger charges by itself
            wp.app_set("amp", 10)  # 6.9 kW on three phases
            wp.plug_in(soc=40)
            runner = Runner(path, address)
            await runner.start()
            try:
                await wait_for(bus, SERVICE, "/Ac/Power", lambda v: v == 10 * 3 * 230.0,
                               timeout=30)
                await eventually(lambda: abs(m.snapshot.setpoint_w - 6900.0) < 1.0, 30)
                await eventually(lambda: abs(m.snapshot.battery_w + 500.0) < 200, 20)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{(await runner.stop())[1]}") from None
            code, out = await runner.stop()
            assert code == 0, out
            assert wp.state.settings["frc"] == 0  # manual mode: never touched
    run(scenario())
