"""The Multiplus's ESS rules (sim.ess): the balance always holds, feed-in limits, the ramp."""

from __future__ import annotations

import itertools
import math

import pytest

from sim.ess import island, ramp, regulate

LOADS = (0.0, 400.0, 3000.0, 9000.0)
PV = (0.0, 1500.0, 6000.0)
TARGETS = (-8000.0, -500.0, 0.0, 2000.0)
LIMITS = (None, 0.0, 1000.0)
CAPS = ((5000.0, 5000.0), (0.0, 5000.0), (5000.0, 0.0))


def test_on_the_grid_the_books_balance_and_export_stays_within_every_limit() -> None:
    for load, pv_ac, pv_dc, target, limit, dc_feed_in, (charge, discharge) in \
            itertools.product(LOADS, PV, PV, TARGETS, LIMITS, (True, False), CAPS):
        f = regulate(target_w=target, load_w=load, pv_ac_w=pv_ac, pv_dc_w=pv_dc,
                     charge_cap_w=charge, discharge_cap_w=discharge, export_limit_w=limit,
                     dc_feed_in=dc_feed_in)
        case = (load, pv_ac, pv_dc, target, limit, dc_feed_in, charge, discharge)
        assert f.grid_w + f.pv_ac_w + f.pv_dc_w == pytest.approx(load + f.battery_w), case
        assert -discharge - 1e-9 <= f.battery_w <= charge + 1e-9, case
        assert 0.0 <= f.pv_ac_w <= pv_ac and 0.0 <= f.pv_dc_w <= pv_dc, case
        assert f.limited_w == pytest.approx(pv_ac + pv_dc - f.pv_ac_w - f.pv_dc_w), case
        if limit is not None:
            assert f.grid_w >= -limit - 1e-9, case
        if not dc_feed_in:  # at most the AC PV surplus goes out
            assert f.grid_w >= min(0.0, load - pv_ac) - 1e-9, case
        if f.pv_ac_w < pv_ac:  # AC PV is held back only after the MPPTs
            assert f.pv_dc_w == 0.0, case


def test_an_unlimited_battery_brings_the_grid_to_the_target() -> None:
    f = regulate(target_w=-1200.0, load_w=500.0, pv_ac_w=0.0, pv_dc_w=0.0,
                 charge_cap_w=5000.0, discharge_cap_w=5000.0, export_limit_w=None,
                 dc_feed_in=True)
    assert (f.grid_w, f.battery_w, f.limited_w) == (-1200.0, -1700.0, 0.0)


def test_in_island_mode_the_grid_is_zero_and_an_overload_is_none() -> None:
    for load, pv_ac, pv_dc, (charge, discharge) in itertools.product(LOADS, PV, PV, CAPS):
        f = island(load_w=load, pv_ac_w=pv_ac, pv_dc_w=pv_dc, charge_cap_w=charge,
                   discharge_cap_w=discharge)
        if pv_ac + pv_dc - load < -discharge:
            assert f is None
            continue
        assert f is not None and f.grid_w == 0.0
        assert f.pv_ac_w + f.pv_dc_w == pytest.approx(load + f.battery_w)
        assert -discharge <= f.battery_w <= charge


def test_the_ramp_is_first_order_and_lands_on_the_target() -> None:
    assert ramp(0.0, 1000.0, 1.5, 1.5) == pytest.approx(1000.0 * (1 - math.exp(-1)))
    assert ramp(0.0, 1000.0, 0.0, 1.5) == 0.0
    assert ramp(0.0, 1000.0, 0.1, 0.0) == 1000.0  # no time constant: at once
    assert ramp(999.995, 1000.0, 0.1, 1.5) == 1000.0  # within 0.01 W: there
    assert ramp(500.0, -500.0, 30.0, 1.5) == -500.0
