"""What VRM shows of a Wattpilot: /Status, the current slider, the session (pure)."""

from __future__ import annotations

import pytest

from nodes.energy.wattpilot_vrm import (
    CHARGING,
    MODEL_STATUS,
    Session,
    current_setting,
    vrm_current,
    vrm_status,
)

# VRM /Status (venus-dbus.md, gui-v2 Evcs_Status)
DISCONNECTED, CONNECTED, CHARGING_, CHARGED = 0, 1, 2, 3
WAITING_FOR_RFID, WAITING_FOR_START = 5, 6
GROUND_ERROR, WELDED, RESIDUAL, OVERVOLTAGE, OVERHEATING = 8, 9, 11, 13, 14
CHARGING_LIMIT, TO_THREE, TO_ONE = 20, 22, 23

EXPECTED = {
    0: CONNECTED, 1: OVERHEATING, 2: WAITING_FOR_RFID, 3: CHARGING_, 4: CONNECTED,
    5: WAITING_FOR_START, 6: CHARGING_LIMIT, 7: CHARGING_, 8: CHARGING_, 9: CHARGING_,
    10: CHARGING_, 11: CHARGING_, 12: CHARGING_, 13: CHARGING_, 14: CHARGING_,
    15: CHARGING_, 16: CONNECTED, 17: CONNECTED, 18: CONNECTED, 19: CHARGING_,
    20: CHARGING_, 22: CONNECTED, 23: TO_THREE, 24: WAITING_FOR_START, 26: CONNECTED,
    27: WAITING_FOR_START, 28: WAITING_FOR_START, 29: WAITING_FOR_START, 30: CONNECTED,
    31: WAITING_FOR_START, 32: WAITING_FOR_START, 33: CHARGING_, 34: WAITING_FOR_START,
    35: WAITING_FOR_START,
}
"""modelStatus -> /Status with a car connected, written out from the protocol sheet"""


def status(model_status: object, *, car: object = 3, err: object = 0, power_w: float = 0.0,
           phases_wanted: int | None = None) -> int:
    return vrm_status(car=car, model_status=model_status, err=err, power_w=power_w,
                      phases_wanted=phases_wanted)


# -- vrm_status ---------------------------------------------------------------------------

def test_every_model_status_of_the_protocol_sheet_has_a_row() -> None:
    assert set(MODEL_STATUS) == set(range(36)) - {21, 25}


@pytest.mark.parametrize("model_status", sorted(EXPECTED))
@pytest.mark.parametrize("power_w", [0.0, 3680.0])
def test_each_model_status_shows_its_vrm_status_with_a_car(model_status: int,
                                                           power_w: float) -> None:
    assert status(model_status, power_w=power_w) == EXPECTED[model_status]
    assert MODEL_STATUS[model_status][1] == EXPECTED[model_status]


def test_the_charging_set_is_every_model_status_that_shows_charging() -> None:
    assert {n for n, code in EXPECTED.items() if code == CHARGING_} == CHARGING
    assert {12, 7, 3, 33} <= CHARGING and not {4, 23, 24} & CHARGING


@pytest.mark.parametrize("model_status", [99, 21, 25, -1, None, "x", True, 12.0, [12]])
def test_an_unknown_model_status_shows_charging_while_power_flows(model_status: object
                                                                  ) -> None:
    assert status(model_status, power_w=1500.0) == CHARGING_


@pytest.mark.parametrize("model_status", [99, 21, 25, -1, None, "x", True, 12.0, [12]])
def test_an_unknown_model_status_without_power_shows_connected(model_status: object) -> None:
    assert status(model_status, power_w=0.0) == CONNECTED


@pytest.mark.parametrize("model_status", [12, 3, 26, 99, None])
def test_no_car_is_disconnected_whatever_else_it_says(model_status: object) -> None:
    assert status(model_status, car=1, err=13, power_w=50.0) == DISCONNECTED


def test_a_full_car_without_power_is_charged() -> None:
    assert status(12, car=4) == CHARGED
    assert status(None, car=4) == CHARGED


def test_a_full_car_that_still_draws_power_shows_its_model_status() -> None:
    assert status(12, car=4, power_w=300.0) == CHARGING_
    assert status(99, car=4, power_w=300.0) == CHARGING_


@pytest.mark.parametrize("err,expected", [(1, RESIDUAL), (2, RESIDUAL), (11, RESIDUAL),
                                          (4, OVERVOLTAGE), (8, GROUND_ERROR),
                                          (9, WELDED), (13, OVERHEATING)])
@pytest.mark.parametrize("car", [0, 2, 3, 4, 5, None])
def test_an_error_shows_its_vrm_error_status(err: int, expected: int, car: object) -> None:
    assert status(26, car=car, err=err) == expected


@pytest.mark.parametrize("err", [0, 3, 5, 6, 7, 10, 12, 14, 15, 16, 99, None, True, "1"])
def test_an_error_without_a_vrm_status_shows_the_model_status(err: object) -> None:
    assert status(26, err=err) == CONNECTED
    assert status(12, err=err) == CHARGING_


@pytest.mark.parametrize("car", [0, 5, None, "x"])
def test_a_car_state_of_error_or_unknown_shows_the_model_status(car: object) -> None:
    assert status(12, car=car) == CHARGING_
    assert status(None, car=car, power_w=0.0) == CONNECTED


def test_a_phase_switch_shows_its_direction() -> None:
    assert status(23, phases_wanted=3) == TO_THREE
    assert status(23, phases_wanted=1) == TO_ONE
    assert status(23, phases_wanted=None) == TO_THREE


# -- the current slider -------------------------------------------------------------------

@pytest.mark.parametrize("amps", range(6, 17))
def test_six_to_sixteen_amps_is_one_phase_at_that_current(amps: int) -> None:
    assert current_setting(amps, max_a=16) == (1, amps)


def test_seventeen_amps_is_one_phase_at_sixteen() -> None:
    assert current_setting(17, max_a=16) == (1, 16)
    assert current_setting(17, max_a=32) == (1, 16)
    assert current_setting(17.9, max_a=16) == (1, 16)


@pytest.mark.parametrize("amps,per_phase", [(18, 6), (19, 6), (20, 7), (21, 7), (24, 8),
                                            (30, 10), (33, 11), (40, 13), (45, 15),
                                            (47, 16), (48, 16)])
def test_eighteen_amps_and_more_is_three_phases_at_a_third(amps: int, per_phase: int) -> None:
    assert current_setting(amps, max_a=16) == (2, per_phase)


def test_the_setting_is_capped_by_the_charger_limit() -> None:
    assert current_setting(16, max_a=10) == (1, 10)
    assert current_setting(48, max_a=10) == (2, 10)
    assert current_setting(80, max_a=16) == (2, 16)
    assert current_setting(96, max_a=32) == (2, 32)


def test_the_setting_is_never_below_the_minimum() -> None:
    assert current_setting(0, max_a=16) == (1, 6)
    assert current_setting(3, max_a=16) == (1, 6)
    assert current_setting(6, max_a=16, min_a=8) == (1, 8)
    assert current_setting(18, max_a=16, min_a=8) == (2, 8)


def test_a_fraction_is_rounded() -> None:
    assert current_setting(6.4, max_a=16) == (1, 6)
    assert current_setting(9.6, max_a=16) == (1, 10)
    assert current_setting(31.4, max_a=16) == (2, 10)
    assert current_setting(31.6, max_a=16) == (2, 11)


def test_the_charger_current_shows_as_the_slider_value() -> None:
    assert vrm_current(amp=10, phases=1) == 10.0
    assert vrm_current(amp=10, phases=3) == 30.0
    assert vrm_current(amp=7.5, phases=3) == 22.5


@pytest.mark.parametrize("amp", [None, True, "10", [10]])
def test_no_charger_current_is_no_slider_value(amp: object) -> None:
    assert vrm_current(amp=amp, phases=1) is None


@pytest.mark.parametrize("slider", [*range(6, 17), *range(18, 49, 3)])
def test_a_slider_value_comes_back_as_it_was_set(slider: int) -> None:
    psm, amp = current_setting(slider, max_a=16)
    assert vrm_current(amp=amp, phases=3 if psm == 2 else 1) == slider


@pytest.mark.parametrize("phases", [1, 3])
@pytest.mark.parametrize("amp", range(6, 17))
def test_a_charger_setting_goes_through_the_slider_unchanged(amp: int, phases: int) -> None:
    slider = vrm_current(amp=amp, phases=phases)
    assert slider is not None
    assert current_setting(slider, max_a=16) == (2 if phases == 3 else 1, amp)


# -- the session --------------------------------------------------------------------------

def test_time_counts_between_two_updates_that_both_saw_charging() -> None:
    session = Session()
    session.update(0, connected=True, charging=False, wh=0)
    session.update(10, connected=True, charging=True, wh=0)
    session.update(70, connected=True, charging=True, wh=100)
    assert session.time_s == 60
    session.update(100, connected=True, charging=True, wh=200)
    assert session.time_s == 90


def test_time_does_not_count_up_to_an_update_that_saw_no_charging() -> None:
    session = Session()
    session.update(0, connected=True, charging=True, wh=0)
    session.update(60, connected=True, charging=True, wh=100)
    session.update(600, connected=True, charging=False, wh=100)  # stopped somewhere between
    session.update(900, connected=True, charging=False, wh=100)
    assert session.time_s == 60


def test_time_does_not_count_while_not_charging() -> None:
    session = Session()
    session.update(0, connected=True, charging=False, wh=0)
    session.update(600, connected=True, charging=False, wh=0)
    assert session.time_s == 0


def test_energy_is_the_charger_session_energy_in_kwh() -> None:
    session = Session()
    session.update(0, connected=True, charging=True, wh=1234.5678)
    assert session.energy_kwh == 1.235
    session.update(1, connected=True, charging=True, wh=None)  # not reported: kept
    assert session.energy_kwh == 1.235


def test_on_disconnect_both_counters_go_to_zero_at_unplugging() -> None:
    session = Session("OnDisconnect")
    session.update(0, connected=True, charging=True, wh=0)
    session.update(60, connected=True, charging=True, wh=5000)
    session.update(61, connected=False, charging=False, wh=5000)
    assert (session.time_s, session.energy_kwh) == (0, 0)


def test_on_connect_the_counters_show_the_last_session_until_the_next_car() -> None:
    session = Session("OnConnect")
    session.update(0, connected=True, charging=True, wh=0)
    session.update(60, connected=True, charging=True, wh=5000)
    session.update(60, connected=False, charging=False, wh=5000)
    session.update(3600, connected=False, charging=False, wh=0)
    assert (session.time_s, session.energy_kwh) == (60, 5.0)
    session.update(7200, connected=True, charging=False, wh=0)
    assert (session.time_s, session.energy_kwh) == (0, 0)


def test_a_restart_with_a_car_connected_resets_nothing() -> None:
    """The first update of a new session object is no plug-in."""
    for reset in ("OnConnect", "OnDisconnect"):
        session = Session(reset, time_s=120.0, energy_kwh=2.0)
        session.update(0, connected=True, charging=False, wh=None)
        assert (session.time_s, session.energy_kwh) == (120, 2.0), reset


def test_time_does_not_count_across_an_unplugging_and_a_new_car() -> None:
    session = Session("OnConnect")
    session.update(0, connected=True, charging=True, wh=0)
    session.update(30, connected=False, charging=False, wh=None)
    session.update(500, connected=True, charging=True, wh=0)
    session.update(510, connected=True, charging=True, wh=10)
    assert session.time_s == 10
