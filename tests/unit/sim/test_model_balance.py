"""The physical model keeps its books: power and energy balance, per phase and in total."""

from __future__ import annotations

import math

import pytest

from sim import EnergyModel, ModelParams, Snapshot

TOLERANCE_W = 1e-6


def day(params: ModelParams, step_s: float = 60.0) -> list[Snapshot]:
    model = EnergyModel(params)
    return [model.step(step_s) for _ in range(int(86_400 / step_s))]


@pytest.fixture(scope="module")
def series() -> list[Snapshot]:
    return day(ModelParams(seed=7))


def test_power_balance_holds_at_every_step_of_a_day(series: list[Snapshot]) -> None:
    for snap in series:
        assert snap.grid_w + snap.pv_w == pytest.approx(
            snap.load_w + snap.battery_w, abs=TOLERANCE_W), snap.hour


def test_phases_add_up_to_the_totals(series: list[Snapshot]) -> None:
    for snap in series:
        assert math.fsum(snap.grid_l) == pytest.approx(snap.grid_w, abs=TOLERANCE_W)
        assert math.fsum(snap.load_l) == pytest.approx(snap.load_w, abs=TOLERANCE_W)
        assert math.fsum(snap.pv_ac_l) == pytest.approx(snap.pv_ac_w, abs=TOLERANCE_W)
        assert math.fsum(snap.inverter_l) == pytest.approx(snap.inverter_w, abs=TOLERANCE_W)
        assert snap.inverter_w == pytest.approx(snap.battery_w - snap.pv_dc_w, abs=TOLERANCE_W)


def test_the_day_has_sun_night_import_and_export(series: list[Snapshot]) -> None:
    assert max(s.pv_w for s in series) > 3000
    assert min(s.pv_w for s in series) == 0.0
    assert all(s.load_w > 0 for s in series)
    assert min(s.battery_w for s in series) < -100 < 100 < max(s.battery_w for s in series)
    assert min(s.grid_w for s in series) < -100


def test_energy_counters_balance_over_the_day(series: list[Snapshot]) -> None:
    end = series[-1]
    assert end.grid_import_kwh == pytest.approx(math.fsum(end.grid_import_l_kwh))
    net_gross = end.grid_import_kwh - end.grid_export_kwh
    assert net_gross == pytest.approx(end.grid_net_import_kwh - end.grid_net_export_kwh)
    supplied = net_gross + end.pv_ac_kwh + end.pv_dc_kwh + end.battery_discharged_kwh
    assert supplied == pytest.approx(end.load_kwh + end.battery_charged_kwh, abs=1e-6)
    stored = (end.battery_charged_kwh - end.battery_discharged_kwh) * 1000
    assert end.soc - 50.0 == pytest.approx(stored / 28_000 * 100, abs=1e-6)


def test_gross_counters_exceed_net_when_phases_disagree(series: list[Snapshot]) -> None:
    # one phase exporting while another imports counts both ways in gross metering
    end = series[-1]
    assert end.grid_export_kwh > end.grid_net_export_kwh
    assert end.grid_import_kwh > end.grid_net_import_kwh


def test_battery_voltage_and_current_are_plausible(series: list[Snapshot]) -> None:
    for snap in series:
        assert 47.0 < snap.battery_v < 53.5
        assert snap.battery_v * snap.battery_a == pytest.approx(snap.battery_w, abs=1e-6)
        assert (snap.battery_a > 0) == (snap.battery_w > 0)


def test_ac_values_are_plausible(series: list[Snapshot]) -> None:
    for snap in series:
        assert all(225 < v < 245 for v in snap.voltage_l)
        assert 49.9 < snap.frequency_hz < 50.1
        for power, current, pf in zip(snap.grid_l, snap.grid_current_l, snap.grid_pf_l,
                                      strict=True):
            assert current >= abs(power) / 245
            assert (pf < 0) == (power < 0) and 0.5 <= abs(pf) <= 0.97
