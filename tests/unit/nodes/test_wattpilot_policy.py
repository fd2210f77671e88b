"""When the Wattpilot charges in auto mode: allowance, low price, cooldowns (pure).

Every decision gets `now` explicitly: the tests drive a virtual clock in seconds.
"""

from __future__ import annotations

import pytest

from nodes.energy.wattpilot_policy import AutoPolicy, Plan, Wish

U = 230.0
START_CHARGING, TO_THREE, TO_ONE, STOP_CHARGING, WAITING_FOR_SUN = 21, 22, 23, 24, 4


def policy(*, min_on_off_s: float = 600, min_phase_switch_s: float = 300) -> AutoPolicy:
    return AutoPolicy(min_on_off_s=min_on_off_s, min_phase_switch_s=min_phase_switch_s)


def amps(a: float, *, max_a: int = 16, min_a: int = 6, low_price: bool = False,
         low_price_a: float = 0.0) -> Wish:
    """A wish with `a` single-phase-equivalent amps of solar allowance."""
    return Wish(allowance_w=a * U, voltage_v=U, max_a=max_a, min_a=min_a,
                low_price=low_price, low_price_a=low_price_a)


def no_allowance(*, low_price: bool = False, low_price_a: float = 0.0) -> Wish:
    """A wish without an allowance: none yet, or lost."""
    return Wish(allowance_w=None, voltage_v=U, max_a=16, low_price=low_price,
                low_price_a=low_price_a)


def charging(phases: int = 1, *, at: float = 0, **options: float) -> AutoPolicy:
    p = policy(**options)
    p.found_charging(phases, at)
    return p


# -- starting -----------------------------------------------------------------------------

def test_nothing_below_six_amps_is_waiting_for_sun() -> None:
    p = policy()
    assert p.decide(Wish(allowance_w=6 * U - 1, voltage_v=U, max_a=16), 0) == \
        Plan(False, status=WAITING_FOR_SUN, reason="waiting for sun")
    assert p.charging is False


def test_six_amps_of_allowance_start_at_once_after_the_runtime_starts() -> None:
    p = policy()
    plan = p.decide(Wish(allowance_w=6 * U, voltage_v=U, max_a=16), 0)
    assert plan == Plan(True, 1, 6, why="solar", reason="start on 1 phase(s) (solar)")
    assert p.charging is True and p.phases == 1 and p.on_off_at == 0


@pytest.mark.parametrize("allowance_w,expected", [(2299.0, 9), (2300.0, 10), (2530.0, 11),
                                                  (3679.9, 15), (3680.0, 16)])
def test_the_current_is_the_allowance_over_the_voltage_rounded_down(allowance_w: float,
                                                                    expected: int) -> None:
    p = charging()
    plan = p.decide(Wish(allowance_w=allowance_w, voltage_v=U, max_a=16), 10)
    assert plan == Plan(True, 1, expected, why="solar", reason=f"solar: {expected} A")


def test_the_voltage_the_charger_reports_is_used() -> None:
    p = charging()
    assert p.decide(Wish(allowance_w=2400, voltage_v=240, max_a=16), 1).amps == 10
    assert p.decide(Wish(allowance_w=2400, voltage_v=200, max_a=16), 2).amps == 12


def test_no_voltage_is_nothing_to_charge_with() -> None:
    p = policy()
    assert p.decide(Wish(allowance_w=5000, voltage_v=0, max_a=16), 0).charge is False


@pytest.mark.parametrize("a,phases,per_phase", [(16, 1, 16), (17, 1, 16), (18, 3, 6),
                                                (20, 3, 6), (30, 3, 10), (47, 3, 15),
                                                (48, 3, 16), (80, 3, 16)])
def test_one_phase_up_to_the_limit_three_from_eighteen_amps(a: int, phases: int,
                                                            per_phase: int) -> None:
    p = policy()
    plan = p.decide(amps(a), 0)
    assert (plan.charge, plan.phases, plan.amps) == (True, phases, per_phase)
    assert plan.reason == f"start on {phases} phase(s) (solar)"


def test_one_phase_carries_16_a_at_most_also_with_a_larger_limit() -> None:
    p = policy()  # a 22 kW unit: 17 A stay on one phase at 16 A (as VRM's slider)
    assert p.decide(amps(17, max_a=32), 0) == Plan(True, 1, 16, why="solar",
                                                   reason="start on 1 phase(s) (solar)")
    q = policy()  # 20 A go to three phases
    assert q.decide(amps(20, max_a=32), 0) == Plan(True, 3, 6, why="solar",
                                                   reason="start on 3 phase(s) (solar)")
    r = policy()  # and three phases take up to the unit's 32 A each
    assert r.decide(amps(96, max_a=32), 0) == Plan(True, 3, 32, why="solar",
                                                   reason="start on 3 phase(s) (solar)")


def test_a_lower_limit_caps_the_target() -> None:
    p = policy()
    plan = p.decide(amps(40, max_a=10), 0)
    assert plan == Plan(True, 3, 10, why="solar", reason="start on 3 phase(s) (solar)")
    assert p.target(amps(40, max_a=10)) == (30, "solar")


def test_a_higher_minimum_raises_the_start_threshold() -> None:
    p = policy()
    assert p.decide(amps(7, min_a=8), 0).charge is False
    assert p.decide(amps(8, min_a=8), 0) == Plan(True, 1, 8, why="solar",
                                                 reason="start on 1 phase(s) (solar)")


# -- the on/off cooldown ------------------------------------------------------------------

def test_a_start_waits_for_min_on_off_after_a_stop() -> None:
    p = charging(at=0)
    assert p.decide(amps(0), 600).charge is False  # stopped at 600
    plan = p.decide(amps(10), 700)
    assert plan == Plan(False, status=START_CHARGING, wait_s=500, why="solar",
                        reason="start waits 500 s (min on/off time)")
    assert p.charging is False


def test_the_start_comes_when_the_cooldown_ends() -> None:
    p = charging(at=0)
    p.decide(amps(0), 600)
    assert p.decide(amps(10), 1199.5).wait_s == pytest.approx(0.5)
    assert p.decide(amps(10), 1199.5).reason == "start waits 1 s (min on/off time)"
    assert p.decide(amps(10), 1200) == Plan(True, 1, 10, why="solar",
                                            reason="start on 1 phase(s) (solar)")


def test_a_stop_waits_for_min_on_off_after_a_start_charging_at_the_minimum() -> None:
    p = policy()
    p.decide(amps(10), 0)
    plan = p.decide(amps(2), 100)
    assert plan == Plan(True, 1, 6, status=STOP_CHARGING, wait_s=500, why="solar",
                        reason="stop waits 500 s (min on/off time)")
    assert p.charging is True


def test_a_stop_that_waits_on_three_phases_stays_on_three_at_the_minimum() -> None:
    p = charging(3, at=0)
    assert p.decide(amps(0), 300) == Plan(True, 3, 6, status=STOP_CHARGING, wait_s=300,
                                          why="solar",
                                          reason="stop waits 300 s (min on/off time)")


def test_the_stop_comes_when_the_cooldown_ends() -> None:
    p = policy()
    p.decide(amps(10), 0)
    assert p.decide(amps(0), 600) == Plan(False, status=WAITING_FOR_SUN,
                                          reason="stop: not enough surplus")
    assert p.charging is False and p.on_off_at == 600
    assert p.decide(amps(0), 601) == Plan(False, status=WAITING_FOR_SUN,
                                          reason="waiting for sun")


def test_the_sun_back_while_a_stop_waits_charges_on() -> None:
    p = policy()
    p.decide(amps(10), 0)
    p.decide(amps(0), 100)
    assert p.decide(amps(12), 200) == Plan(True, 1, 12, why="solar", reason="solar: 12 A")
    assert p.on_off_at == 0


def test_no_cooldown_with_min_on_off_zero() -> None:
    p = policy(min_on_off_s=0)
    p.decide(amps(10), 0)
    assert p.decide(amps(0), 0).charge is False
    assert p.decide(amps(10), 0).charge is True


# -- a lost allowance ---------------------------------------------------------------------

def test_a_lost_allowance_stops_at_once_inside_the_cooldown() -> None:
    p = policy()
    p.decide(amps(10), 0)
    assert p.decide(no_allowance(), 10) == Plan(False,
                                                reason="stop: no allowance (distributor gone)")
    assert p.charging is False and p.on_off_at == 10


def test_after_a_lost_allowance_the_next_start_waits_the_cooldown() -> None:
    p = policy()
    p.decide(amps(10), 0)
    p.decide(no_allowance(), 10)
    assert p.decide(amps(10), 20).status == START_CHARGING
    assert p.decide(amps(10), 20).wait_s == 590


def test_no_allowance_yet_is_waiting_for_sun() -> None:
    p = policy()
    assert p.decide(no_allowance(), 0) == Plan(False, status=WAITING_FOR_SUN,
                                               reason="waiting for sun")


def test_a_lost_allowance_keeps_low_price_charging() -> None:
    p = policy()
    p.decide(amps(0, low_price=True, low_price_a=16), 0)
    assert p.decide(no_allowance(low_price=True, low_price_a=16), 10) == \
        Plan(True, 1, 16, why="low price", reason="low price: 16 A")


# -- phase switching ----------------------------------------------------------------------

def test_a_switch_to_three_phases_when_one_cannot_carry_it() -> None:
    p = charging(1, at=0)
    assert p.decide(amps(24), 10) == Plan(True, 3, 8, why="solar",
                                          reason="switch to 3 phase(s) (solar)")
    assert p.phases == 3 and p.phase_at == 10


def test_the_next_switch_waits_min_phase_switch_on_three_phases_at_the_minimum() -> None:
    p = charging(1, at=0)
    p.decide(amps(24), 10)
    plan = p.decide(amps(12), 100)
    assert plan == Plan(True, 3, 6, status=TO_ONE, wait_s=210, why="solar",
                        reason="switch to 1 phase(s) waits 210 s (min phase switch time)")
    assert p.phases == 3


def test_a_switch_up_that_waits_stays_on_one_phase_at_its_maximum() -> None:
    p = charging(1, at=0)
    p.decide(amps(24), 10)
    p.decide(amps(12), 400)  # down to one phase at 400
    plan = p.decide(amps(30), 500)
    assert plan == Plan(True, 1, 16, status=TO_THREE, wait_s=200, why="solar",
                        reason="switch to 3 phase(s) waits 200 s (min phase switch time)")
    assert p.phases == 1


def test_the_switch_comes_when_its_cooldown_ends() -> None:
    p = charging(1, at=0)
    p.decide(amps(24), 10)
    assert p.decide(amps(12), 310) == Plan(True, 1, 12, why="solar",
                                           reason="switch to 1 phase(s) (solar)")
    assert p.phases == 1 and p.phase_at == 310


def test_three_phases_stay_while_three_can_carry_it() -> None:
    """No switch down while the target is 18 A or more, even at or below one phase's limit."""
    p = charging(3, at=0)
    assert p.decide(amps(18), 10) == Plan(True, 3, 6, why="solar", reason="solar: 18 A")
    assert p.decide(amps(20, max_a=32), 20) == Plan(True, 3, 6, why="solar",
                                                    reason="solar: 20 A")
    assert p.decide(amps(17), 30).reason == "switch to 1 phase(s) (solar)"


def test_a_lower_allowance_on_one_phase_follows_without_a_switch() -> None:
    p = charging(1, at=0)
    assert p.decide(amps(17), 1) == Plan(True, 1, 16, why="solar", reason="solar: 17 A")
    assert p.decide(amps(7), 2) == Plan(True, 1, 7, why="solar", reason="solar: 7 A")


def test_three_phases_share_the_target_rounded_down() -> None:
    p = charging(3, at=0)
    assert p.decide(amps(26), 1).amps == 8
    assert p.decide(amps(27), 2).amps == 9


def test_the_start_is_no_phase_switch() -> None:
    p = policy()
    p.decide(amps(10), 0)
    assert p.decide(amps(24), 1).reason == "switch to 3 phase(s) (solar)"


# -- low price ----------------------------------------------------------------------------

def test_low_price_charges_at_its_current_without_sun() -> None:
    p = policy()
    assert p.decide(amps(0, low_price=True, low_price_a=16), 0) == \
        Plan(True, 1, 16, why="low price", reason="start on 1 phase(s) (low price)")


def test_low_price_current_is_read_like_the_slider() -> None:
    p = policy()
    assert p.decide(amps(0, low_price=True, low_price_a=48), 0) == \
        Plan(True, 3, 16, why="low price", reason="start on 3 phase(s) (low price)")
    assert p.target(amps(0, low_price=True, low_price_a=17)) == (16, "low price")
    assert p.target(amps(0, low_price=True, low_price_a=24)) == (24, "low price")


def test_low_price_off_or_at_zero_amps_is_no_wish() -> None:
    p = policy()
    assert p.target(amps(0, low_price=False, low_price_a=16)) == (0, None)
    assert p.target(amps(0, low_price=True, low_price_a=0)) == (0, None)


def test_low_price_wins_when_it_is_larger() -> None:
    p = charging(1, at=0)
    plan = p.decide(amps(10, low_price=True, low_price_a=48), 10)
    assert plan == Plan(True, 3, 16, why="low price", reason="switch to 3 phase(s) (low price)")


def test_solar_wins_when_it_is_larger() -> None:
    p = charging(1, at=0)
    plan = p.decide(amps(30, low_price=True, low_price_a=12), 10)
    assert plan == Plan(True, 3, 10, why="solar", reason="switch to 3 phase(s) (solar)")


def test_solar_then_low_price_then_solar() -> None:
    """It starts with 10 A of sun, takes 48 A at a low price, and goes back to the sun."""
    p = policy(min_phase_switch_s=0)
    sun, cheap = amps(10), amps(10, low_price=True, low_price_a=48)
    assert p.decide(sun, 0) == Plan(True, 1, 10, why="solar",
                                    reason="start on 1 phase(s) (solar)")
    assert p.decide(cheap, 60) == Plan(True, 3, 16, why="low price",
                                       reason="switch to 3 phase(s) (low price)")
    assert p.decide(sun, 120) == Plan(True, 1, 10, why="solar",
                                      reason="switch to 1 phase(s) (solar)")


def test_low_price_then_more_sun_then_low_price() -> None:
    """It starts at 12 A of low price, takes 30 A of sun when it is larger, and back."""
    p = policy(min_phase_switch_s=0)
    cheap, sunny = amps(0, low_price=True, low_price_a=12), amps(30, low_price=True,
                                                                 low_price_a=12)
    assert p.decide(cheap, 0) == Plan(True, 1, 12, why="low price",
                                      reason="start on 1 phase(s) (low price)")
    assert p.decide(sunny, 60) == Plan(True, 3, 10, why="solar",
                                       reason="switch to 3 phase(s) (solar)")
    assert p.decide(cheap, 120) == Plan(True, 1, 12, why="low price",
                                        reason="switch to 1 phase(s) (low price)")


def test_an_equal_wish_counts_as_low_price() -> None:
    assert policy().target(amps(16, low_price=True, low_price_a=16)) == (16, "low price")


def test_the_end_of_a_low_price_without_sun_waits_the_cooldown_to_stop() -> None:
    p = policy()
    p.decide(amps(0, low_price=True, low_price_a=16), 0)
    assert p.decide(amps(0), 60) == Plan(True, 1, 6, status=STOP_CHARGING, wait_s=540,
                                         why="solar",
                                         reason="stop waits 540 s (min on/off time)")


# -- what the node tells the policy -------------------------------------------------------

def test_a_charger_found_charging_counts_as_started_then() -> None:
    p = policy()
    p.found_charging(3, 1000)
    assert (p.charging, p.phases, p.on_off_at) == (True, 3, 1000)
    assert p.decide(amps(0), 1100) == Plan(True, 3, 6, status=STOP_CHARGING, wait_s=500,
                                           why="solar",
                                           reason="stop waits 500 s (min on/off time)")


def test_a_stop_of_ours_counts_for_the_cooldown() -> None:
    p = policy()
    p.decide(amps(10), 0)
    p.stopped(50)
    assert p.charging is False and p.on_off_at == 50
    assert p.decide(amps(10), 100).wait_s == 550


def test_a_stop_by_the_charger_does_not_count() -> None:
    p = policy()
    p.decide(amps(10), 0)
    p.stopped(50, counts=False)
    assert p.charging is False and p.on_off_at == 0
    assert p.decide(amps(10), 100).wait_s == 500


def test_a_stop_while_not_charging_changes_nothing() -> None:
    p = policy()
    p.stopped(50)
    assert p.on_off_at == float("-inf")
    assert p.decide(amps(10), 51).charge is True
