"""ESS behaviour of the model: setpoint, SoC limit, full battery, power limits, loads."""

from __future__ import annotations

import itertools

import pytest

from sim import EnergyModel, EssSettings, LoadProfile, ModelParams, PvProfile

QUIET_LOAD = LoadProfile(noise=0.0, spike_chance=0.0)


def test_setpoint_moves_power_from_battery_to_grid() -> None:
    model = EnergyModel(ModelParams(start_hour=10.0))
    before = model.snapshot
    assert before.grid_w == pytest.approx(0.0, abs=1e-6)
    model.settings.setpoint_w = 800.0
    assert model.refresh().grid_w == pytest.approx(0.0, abs=1e-6)  # no time, no ramp yet
    after = model.step(30)  # the Multiplus has reached it
    assert after.grid_target_w == 800.0
    assert after.grid_w == pytest.approx(800.0)
    assert after.battery_w == pytest.approx(after.pv_w - after.load_w + 800.0)


def test_the_multi_ramps_to_a_new_setpoint_without_overshoot() -> None:
    model = EnergyModel(ModelParams(start_hour=8.0, load=QUIET_LOAD))  # room to charge
    model.settings.setpoint_w = 2000.0
    series = [model.step(0.5) for _ in range(40)]
    targets = [s.grid_target_w for s in series]
    assert all(a < b or a == b == 2000.0 for a, b in itertools.pairwise(targets))
    assert max(s.grid_w for s in series) <= 2000.0 + 1e-6  # no overshoot
    assert all(s.grid_w == pytest.approx(s.grid_target_w) for s in series)
    assert 800.0 < series[1].grid_w < 1200.0  # after 1 s: about half way (tau 1.5 s)
    assert series[9].grid_w == pytest.approx(2000.0, rel=0.05)  # after 5 s: within 5 %
    assert series[-1].grid_w == pytest.approx(2000.0, abs=0.01)
    for s in series:  # the battery takes the difference, the books balance
        assert s.battery_w == pytest.approx(s.pv_w - s.load_w + s.grid_target_w)
        assert s.grid_w + s.pv_w == pytest.approx(s.load_w + s.battery_w)


def test_a_ramp_does_not_depend_on_the_step_size() -> None:
    def target_after(dt: float, steps: int) -> float:
        model = EnergyModel(ModelParams(start_hour=10.0))
        model.settings.setpoint_w = -1500.0
        for _ in range(steps):
            model.step(dt)
        return model.snapshot.grid_target_w
    assert target_after(0.1, 20) == pytest.approx(target_after(1.0, 2), abs=1e-6)


def test_negative_setpoint_discharges_the_battery_into_the_grid() -> None:
    model = EnergyModel(ModelParams(start_hour=22.0), settings=EssSettings(setpoint_w=-1500))
    snap = model.step(60)
    assert snap.pv_w == 0.0
    assert snap.grid_w == pytest.approx(-1500.0)
    assert snap.battery_w == pytest.approx(-1500.0 - snap.load_w)


def test_soc_never_drops_below_the_limit() -> None:
    params = ModelParams(start_hour=20.0, initial_soc=12.0)
    model = EnergyModel(params, settings=EssSettings(min_soc=10.0))
    series = [model.step(60) for _ in range(8 * 60)]
    assert min(s.soc for s in series) >= 10.0 - 1e-9
    at_limit = [s for s in series if s.soc <= 10.0 + 1e-9]
    assert len(at_limit) > 60
    for snap in at_limit[1:]:
        assert snap.battery_w >= 0.0
        assert snap.grid_w == pytest.approx(snap.load_w - snap.pv_w + snap.battery_w)
        assert snap.grid_w > 0


def test_raising_the_soc_limit_stops_discharge_at_once() -> None:
    model = EnergyModel(ModelParams(start_hour=22.0, initial_soc=40.0))
    assert model.step(60).battery_w < 0
    model.settings.min_soc = 60.0
    snap = model.step(60)
    assert snap.battery_w == 0.0
    assert snap.grid_w == pytest.approx(snap.load_w)


def test_full_battery_feeds_surplus_into_the_grid() -> None:
    model = EnergyModel(ModelParams(start_hour=12.0, initial_soc=100.0))
    snap = model.step(60)
    assert snap.pv_w > snap.load_w + 1000
    assert snap.soc == 100.0
    assert snap.battery_w == 0.0
    assert snap.grid_w == pytest.approx(snap.load_w - snap.pv_w)
    assert snap.grid_w < -1000


def test_battery_fills_exactly_to_full_then_feeds_in() -> None:
    model = EnergyModel(ModelParams(start_hour=12.0, initial_soc=99.9))
    series = [model.step(600) for _ in range(3)]
    assert series[0].soc == 100.0
    assert 0 < series[0].battery_w < 5000
    assert series[1].battery_w == 0.0 and series[1].grid_w < 0


def test_hardware_and_settings_limit_charge_and_discharge() -> None:
    sunny = ModelParams(start_hour=13.0, pv_ac=PvProfile(peak_w=9000, clouds=0.0))
    snap = EnergyModel(sunny).step(1)
    assert snap.battery_w == pytest.approx(5000.0)
    assert snap.grid_w < 0
    capped = EnergyModel(sunny, settings=EssSettings(max_charge_w=1200)).step(1)
    assert capped.battery_w == pytest.approx(1200.0)
    night = ModelParams(start_hour=23.0)
    settings = EssSettings(setpoint_w=-4000, max_discharge_w=2000)
    drained = EnergyModel(night, settings=settings).step(1)
    assert drained.battery_w == pytest.approx(-2000.0)
    assert drained.grid_w == pytest.approx(drained.load_w - 2000.0)


def test_extra_load_draws_on_its_phase_and_counts_energy() -> None:
    model = EnergyModel(ModelParams(start_hour=23.0, load=QUIET_LOAD))
    heater = model.add_load("heater", 2000.0, phases=(2,))
    before = model.step(1)
    heater.on = True
    after = model.refresh()
    assert after.extra_w == {"heater": 2000.0}
    assert after.load_l[1] - before.load_l[1] == pytest.approx(2000.0)
    assert (after.load_l[0], after.load_l[2]) == (before.load_l[0], before.load_l[2])
    model.step(3600)
    assert heater.energy_wh == pytest.approx(2000.0)
    heater.power_w = 900.0
    assert model.refresh().extra_w == {"heater": 900.0}


def test_three_phase_load_is_split_evenly() -> None:
    model = EnergyModel(ModelParams(start_hour=23.0, load=QUIET_LOAD))
    base = model.snapshot.load_l
    model.add_load("ev", 6900.0, phases=(1, 2, 3), on=True)
    snap = model.refresh()
    assert [b - a for a, b in zip(base, snap.load_l, strict=True)] == pytest.approx([2300] * 3)


def test_extra_load_names_are_unique_and_phases_checked() -> None:
    model = EnergyModel()
    model.add_load("pump", 500.0)
    with pytest.raises(ValueError, match="exists already"):
        model.add_load("pump", 100.0)
    with pytest.raises(ValueError, match="phases"):
        model.add_load("bad", 100.0, phases=(4,))
    model.remove_load("pump")
    assert model.loads == {}


def test_listeners_see_every_step_until_they_unsubscribe() -> None:
    model = EnergyModel()
    seen: list[float] = []
    unsubscribe = model.subscribe(lambda snap: seen.append(snap.time_s))
    model.step(1)
    model.step(1)
    unsubscribe()
    model.step(1)
    assert seen == [9 * 3600 + 1, 9 * 3600 + 2]


def test_time_scale_speeds_up_the_day() -> None:
    model = EnergyModel(ModelParams(time_scale=60.0, start_hour=23.5))
    snap = model.step(60)
    assert snap.time_s == pytest.approx(23.5 * 3600 + 3600)
    assert snap.hour == pytest.approx(0.5)


def test_impossible_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="time_scale"):
        ModelParams(time_scale=0)
    with pytest.raises(ValueError, match="initial_soc"):
        ModelParams(initial_soc=120)
    with pytest.raises(ValueError, match="sunrise"):
        PvProfile(peak_w=1000, sunrise_h=20, sunset_h=6)
    with pytest.raises(ValueError, match="step"):
        EnergyModel().step(-1)


def test_ac_pv_shows_at_its_position_only() -> None:
    snap = EnergyModel(ModelParams(start_hour=12.0, pv_ac_position="output")).snapshot
    assert snap.pv_on("output") == snap.pv_ac_l and snap.pv_ac_w > 0
    assert snap.pv_on("grid") == snap.pv_on("genset") == (0.0, 0.0, 0.0)


def test_the_books_balance_through_feed_in_limits_an_ev_and_a_grid_loss() -> None:
    model = EnergyModel(ModelParams(seed=3, start_hour=0.0, initial_soc=90.0),
                        settings=EssSettings(setpoint_w=-800.0))
    ev = model.add_load("ev", 7000.0, phases=(1, 2, 3))
    supplied = used = 0.0
    for minute in range(24 * 60):
        hour = minute / 60
        model.settings.dc_feed_in = not 10 <= hour < 12
        model.settings.max_feed_in_w = 1000.0 if 12 <= hour < 14 else None
        model.settings.prevent_feedback = 14 <= hour < 15
        ev.on = 17 <= hour < 19
        if hour == 18:
            model.lose_grid()
        if hour == 18.5:
            model.restore_grid()
        s = model.step(60)
        assert s.grid_w + s.pv_w == pytest.approx(s.load_w + s.battery_w, abs=1e-6), hour
        assert s.grid_connected == (not 18 <= hour < 18.5)
        supplied += (s.grid_w + s.pv_w) / 60
        used += (s.load_w + s.battery_w) / 60
    end = model.snapshot
    counted = end.grid_import_kwh - end.grid_export_kwh + end.pv_ac_kwh + end.pv_dc_kwh + \
        end.battery_discharged_kwh - end.battery_charged_kwh
    assert counted == pytest.approx(end.load_kwh, abs=1e-6)
    assert supplied == pytest.approx(used)
