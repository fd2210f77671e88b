"""Shipped flows no-bat-to-ev and charge-current-reducer, end to end: `esess-flowctl run`
on a site file, the simulated Venus OS on a private bus with its model stepping in real
time (the Multi follows the grid setpoint with its ramp, the battery takes the rest),
an EV charging station on AC-out, and the arbiter writing the setpoint.

Tolerances (the model's own noise is off; the Multi settles with tau 1.5 s):
- NoBatToEV: with the EV charging, the battery gives what it gave without the EV
  within 150 W (at night: the house's 500 W; with PV: about 0 W), once settled;
- the reducer: the charge current within 3 A of the desired value after settling, and
  never more than 5 A below it on the way."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from conftest import run
from testkit.flowctl import Runner, site
from testkit.mosquitto import Mosquitto

from nodes.dbus.daemon import PrivateBus
from sim import EnergyModel
from sim.driver import ModelDriver
from sim.model import ModelParams
from sim.profiles import LoadProfile, PvProfile
from sim.venus import SimVenus

FLAT_HOUSE = LoadProfile(shape=((0.0, 500.0), (24.0, 500.0)), noise=0.0, spike_chance=0.0)


def model(*, hour: float, pv_ac_w: float = 0.0, pv_dc_w: float = 0.0,
          soc: float = 50.0) -> EnergyModel:
    return EnergyModel(ModelParams(
        start_hour=hour, load=FLAT_HOUSE, initial_soc=soc,
        pv_ac=PvProfile(peak_w=pv_ac_w, clouds=0.0, sunrise_h=0.0, sunset_h=24.0),
        pv_dc=PvProfile(peak_w=pv_dc_w, clouds=0.0, sunrise_h=0.0, sunset_h=24.0)))


@contextlib.asynccontextmanager
async def gx(tmp_path: Path, m: EnergyModel, flows: str
             ) -> AsyncIterator[tuple[SimVenus, Runner]]:
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        with PrivateBus() as address:
            async with SimVenus(m, address=address) as venus, \
                    ModelDriver(m, interval_s=0.2):
                path = site(tmp_path, "\n".join((
                    f"state_dir: {tmp_path / 'state'}",
                    "connections:",
                    f"  mqtt: {{main: {{host: {broker.host}, port: {broker.port}}}}}",
                    "  setpoint: {default: {default_w: 0, interval_ms: 200}}",
                    "flows:", flows, "")))
                runner = Runner(path, address)
                await runner.start()
                try:
                    yield venus, runner
                except BaseException as exc:
                    assert runner.proc is not None
                    if runner.proc.returncode is None:
                        runner.proc.kill()
                    assert runner.proc.stdout is not None
                    out = (await runner.proc.stdout.read()).decode()
                    raise AssertionError(f"{exc}\n--- the runtime said:\n{out}") from exc
                code, out = await runner.stop()
                assert code == 0 and "Traceback" not in out, out
                assert m.snapshot.setpoint_w == 0.0  # the default again at the stop
    finally:
        broker.stop()


async def settles(what: Callable[[], float], target: float, tolerance: float,
                  timeout: float, *, hold_s: float = 3.0) -> None:
    """`what()` within `tolerance` of `target` for `hold_s` in a row, within `timeout`."""
    deadline = time.monotonic() + timeout
    since: float | None = None
    while True:
        now, value = time.monotonic(), what()
        if abs(value - target) <= tolerance:
            since = since or now
            if now - since >= hold_s:
                return
        else:
            since = None
        if now > deadline:
            raise AssertionError(f"{value:.0f}, not {target:.0f} ± {tolerance:g}, after "
                                 f"{timeout} s")
        await asyncio.sleep(0.1)


NO_BAT = "  - use: no-bat-to-ev\n    vars: {interval_ms: 500}"


def test_no_bat_to_ev_at_night_the_ev_charges_from_the_grid_not_the_battery(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        m = model(hour=22.0)
        async with gx(tmp_path, m, NO_BAT) as (venus, _):
            await settles(lambda: m.snapshot.battery_w, -500.0, 60, 10)  # the house
            assert venus.evcharger is not None
            venus.evcharger.plug_in()
            venus.evcharger.charge(7000)
            await settles(lambda: m.snapshot.setpoint_w, 7000.0, 1.0, 30, hold_s=0.5)
            await settles(lambda: m.snapshot.battery_w, -500.0, 150, 20)
            assert m.snapshot.grid_w > 6500
            venus.evcharger.stop()  # not charging: revoked, the default again
            await settles(lambda: m.snapshot.setpoint_w, 0.0, 1.0, 15, hold_s=0.5)
    run(scenario())


def test_no_bat_to_ev_uses_the_pv_first_and_revokes_when_the_grid_is_lost(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        m = model(hour=12.0, pv_dc_w=3000.0)
        async with gx(tmp_path, m, NO_BAT) as (venus, _):
            assert venus.evcharger is not None
            venus.evcharger.plug_in()
            venus.evcharger.charge(7000)
            # 3000 W of PV: the house's 500 W from it, 2500 W to the EV, 4500 W from the grid
            pv = m.snapshot.pv_dc_w
            await settles(lambda: m.snapshot.setpoint_w, 7000.0 - (pv - 500.0), 80, 30,
                          hold_s=1.0)
            await settles(lambda: m.snapshot.battery_w, 0.0, 150, 20)
            m.lose_grid()
            await settles(lambda: m.snapshot.setpoint_w, 0.0, 1.0, 15, hold_s=0.5)
    run(scenario())


def test_no_bat_to_ev_with_a_relay_gate_requests_only_while_the_relay_is_on(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        m = model(hour=22.0)
        flows = "  - use: no-bat-to-ev\n    vars: {interval_ms: 500, relay: 1}"
        async with gx(tmp_path, m, flows) as (venus, _):
            assert venus.evcharger is not None
            venus.evcharger.plug_in()
            venus.evcharger.charge(7000)
            await asyncio.sleep(3)
            assert m.snapshot.setpoint_w == 0.0  # relay 1 off: nothing requested
            assert venus.system.set_value("/Relay/1/State", 1) == 0
            await settles(lambda: m.snapshot.setpoint_w, 7000.0, 1.0, 30, hold_s=0.5)
            assert venus.system.set_value("/Relay/1/State", 0) == 0
            await settles(lambda: m.snapshot.setpoint_w, 0.0, 1.0, 15, hold_s=0.5)
    run(scenario())


REDUCER = ("  - use: charge-current-reducer\n"
           "    vars: {{desired_current: \"{formula}\", max_feed_in_w: 5000,"
           " interval_ms: 1500}}")


def test_the_reducer_holds_the_charge_current_at_the_desired_value_without_overshoot(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        m = model(hour=12.0, pv_dc_w=5000.0, soc=50.0)
        async with gx(tmp_path, m, REDUCER.format(formula="max(100 - SOC, 30)")) as (_, r):
            s = m.snapshot
            assert s.battery_a > 70  # (5000 - 500) W at ~50 V: far above 50 A
            lowest = [s.battery_a]

            def current() -> float:
                a = m.snapshot.battery_a
                lowest.append(a)
                return a

            desired = 100.0 - m.snapshot.soc
            await settles(current, desired, 3.0, 90, hold_s=6.0)
            assert min(lowest) > desired - 5.0, min(lowest)
            assert m.snapshot.setpoint_w < 0  # feed-in, never import
            assert r.proc is not None and r.proc.returncode is None
    run(scenario())


def test_below_the_desired_current_the_reducer_requests_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        m = model(hour=12.0, pv_dc_w=1500.0, soc=50.0)  # ~20 A, below 50 A
        async with gx(tmp_path, m, REDUCER.format(formula="max(100 - SOC, 30)")):
            await asyncio.sleep(6)
            assert m.snapshot.setpoint_w == 0.0
            assert m.snapshot.battery_a < 50
    run(scenario())
