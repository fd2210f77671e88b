"""Solar overhead allocation (issue 13): the reference's rules, the README's sequence, and
properties that hold for any consumers and readings."""

from __future__ import annotations

import math
import time

from hypothesis import given, settings
from hypothesis import strategies as st
from testkit.allocation import one_grant_per_pass

from nodes.energy.allocation import (
    AllocationInputs,
    AllocationState,
    ConsumerRequest,
    allocate,
)


def sunny(feed_in: float, *, reservation: float = 0.0, battery: float = 0.0,
          soc: float = 50.0) -> AllocationInputs:
    """A three-phase site exporting `feed_in` W in total."""
    third = -feed_in / 3
    return AllocationInputs(grid_l1=third, grid_l2=third, grid_l3=third, battery_power=battery,
                            battery_soc=soc, reservation=reservation)


def auto(key: str, **kw: object) -> ConsumerRequest:
    return ConsumerRequest(key=key, is_automatic=True, **kw)  # type: ignore[arg-type]


EV = auto("ev", request=11000, step_size=250, minimum=1365, priority=35, priority_shift=1)
HEATER = auto("heater", request=3000, step_size=1000, priority=40, priority_shift=5)


def test_reference_worked_example() -> None:
    a = auto("A", request=1000, step_size=500, priority=10)
    b = auto("B", request=2000, step_size=1000, priority=20)
    result = allocate(sunny(3000, reservation=500), [a, b])
    assert result.allowances == {"A": 1000, "B": 1000}
    assert list(result.grants([a, b])) == [("A", 500, 10), ("A", 500, 10), ("B", 1000, 20)]
    assert (result.available, result.reservation, result.assigned, result.remaining) == (
        3000, 500, 2000, 1000)
    assert result.explanations["B"] == ("granted 1000 W: steps, priority 20; "
                                        "reservation 500 W leaves 500 W, step 1000 W")
    assert result.explanations["A"] == "granted 1000 W: steps, priority 10; request reached"


def test_readme_ev_and_heater_priority_shift_sequence() -> None:
    result = allocate(sunny(20000), [EV, HEATER])
    documented = [
        ("ev", 1365, 35), ("ev", 250, 36.0001), ("ev", 250, 37.0002), ("ev", 250, 38.0003),
        ("ev", 250, 39.0004), ("heater", 1000, 40), ("ev", 250, 40.0005),
        ("ev", 250, 41.0006), ("ev", 250, 42.0007), ("ev", 250, 43.0008),
        ("ev", 250, 44.0009), ("heater", 1000, 45.0001), ("ev", 250, 45.0010),
        ("ev", 250, 46.0011),
    ]
    assert list(result.grants([EV, HEATER]))[:14] == documented
    assert result.steps[0].reason == "minimum"
    assert result.explanations["heater"] == "granted 3000 W: steps, priority 40; request reached"


def test_equal_settings_alternate_within_a_cycle() -> None:
    pair = [auto(k, request=1000, step_size=100, priority=50, priority_shift=1) for k in "ab"]
    result = allocate(sunny(650), pair)
    assert [key for key, _, _ in result.grants(pair)] == ["a", "b", "a", "b", "a", "b"]
    assert result.allowances == {"a": 300, "b": 300}


def test_equal_settings_round_robin_across_cycles() -> None:
    trio = [auto(k, request=1000, step_size=1000, priority=50, priority_shift=1) for k in "abc"]
    state = None
    winners = []
    for _ in range(6):
        result = allocate(sunny(1500), trio, state)
        winners.append(next(k for k, w in result.allowances.items() if w))
        state = result.state
    assert winners == ["a", "b", "c", "a", "b", "c"]


def test_state_order_breaks_ties_and_forgets_gone_consumers() -> None:
    pair = [auto(k, request=1000, step_size=1000) for k in "ab"]
    result = allocate(sunny(1500), pair, AllocationState(order=("gone", "b", "a")))
    assert result.allowances == {"a": 0, "b": 1000}
    assert result.state.order == ("a", "b")


def test_shift_onto_a_priority_loses_the_tie() -> None:
    x = auto("x", request=2000, step_size=100, priority=50, priority_shift=1)
    z = auto("z", request=2000, step_size=100, priority=51)
    result = allocate(sunny(250), [x, z])
    assert [key for key, _, _ in result.grants([x, z])] == ["x", "z"]


def test_reservation_blocks_steps_that_do_not_leave_it() -> None:
    result = allocate(sunny(2550, reservation=2400), [auto("p", request=1000, step_size=250)])
    assert result.allowances == {"p": 0}
    assert result.explanations["p"] == "0 W: reservation 2400 W leaves 150 W, step 250 W"


def test_ignore_reservation_is_served_first_and_may_use_it() -> None:
    fountain = auto("fountain", request=120, step_size=120, priority=90,
                    ignore_bat_reservation=True)
    pump = auto("pump", request=500, step_size=500, priority=10)
    result = allocate(sunny(600, reservation=400), [pump, fountain])
    assert result.allowances == {"pump": 0, "fountain": 120}
    assert result.steps[0].key == "fountain"
    assert result.explanations["fountain"].endswith("reservation ignored; request reached")


def test_ignore_reservation_first_grant_tests_the_minimum() -> None:
    ev = auto("ev", request=5000, step_size=100, minimum=1400, ignore_bat_reservation=True)
    result = allocate(sunny(1300, reservation=1000), [ev])  # the original: 1300 > 100 → 1400
    assert result.allowances == {"ev": 0}
    assert result.explanations["ev"] == ("0 W: 1300 W left (reservation ignored), "
                                         "minimum 1400 W")


def test_minimum_is_the_first_grant() -> None:
    result = allocate(sunny(1600), [auto("ev", request=5000, step_size=250, minimum=1365)])
    assert result.allowances == {"ev": 1365}
    assert result.explanations["ev"] == ("granted 1365 W: minimum, priority 100; "
                                         "235 W left, step 250 W")
    assert allocate(sunny(1300), [auto("ev", request=5000, step_size=250, minimum=1365)]
                    ).explanations["ev"] == "0 W: 1300 W left, minimum 1365 W"


def test_no_grant_beyond_request() -> None:
    small = auto("p", request=220, step_size=100)
    result = allocate(sunny(5000), [small])
    assert result.allowances == {"p": 220}
    assert [w for _, w, _ in result.grants([small])] == [100, 100, 20]


def test_minimum_above_request_is_never_granted() -> None:
    result = allocate(sunny(5000), [auto("p", request=1000, step_size=100, minimum=1500)])
    assert result.allowances == {"p": 0}
    assert result.explanations["p"] == "0 W: minimum 1500 W above request 1000 W"


def test_a_fixed_power_device_without_steps_gets_its_minimum_only() -> None:
    pump = auto("pump", request=800, minimum=800)  # StepSize 0: all or nothing
    other = auto("other", request=1000, step_size=500, priority=200)
    result = allocate(sunny(3000), [pump, other])
    assert result.allowances == {"pump": 800, "other": 1000}
    assert result.explanations["pump"] == ("granted 800 W: minimum, priority 100; "
                                           "request reached")
    partial = allocate(sunny(3000), [auto("fan", request=1500, minimum=600)])
    assert partial.allowances == {"fan": 600}
    assert partial.explanations["fan"].endswith("its minimum only (step size 0)")
    assert allocate(sunny(700), [pump]).allowances == {"pump": 0}


def test_manual_consumer_gets_zero_and_its_draw_is_house_load() -> None:
    manual = ConsumerRequest(key="m", is_automatic=False, consumption=2000, request=3000,
                             step_size=100)
    heater = auto("h", consumption=1000, request=3000, step_size=1000)
    result = allocate(sunny(1500), [manual, heater])
    assert result.allowances == {"m": 0, "h": 2000}
    assert result.explanations["m"] == "0 W: manual"
    assert result.automatic_draw == 1000 and result.available == 2500


def test_single_phase_site() -> None:
    inputs = AllocationInputs(grid_l1=-1200, battery_power=300, battery_soc=80, reservation=0)
    result = allocate(inputs, [auto("p", request=2000, step_size=100)])
    assert (result.feed_in, result.available) == (1200, 1500)
    assert result.allowances == {"p": 1400}


def test_discharging_battery_lowers_the_overhead() -> None:
    result = allocate(sunny(0, battery=-500), [auto("h", consumption=2000, request=3000,
                                                     step_size=500)])
    assert result.available == 1500 and result.allowances == {"h": 1000}


def test_negative_reservation_counts_as_zero() -> None:
    result = allocate(sunny(1000, reservation=-3000), [auto("p", request=5000, step_size=100)])
    assert result.reservation == 0 and result.allowances == {"p": 900}


def test_invalid_system_inputs_grant_nothing() -> None:
    good = dict(grid_l1=-5000.0, battery_power=0.0, battery_soc=50.0, reservation=0.0)
    cases = {
        "grid power unknown": dict(good, grid_l1=None),
        "grid power not a number": dict(good, grid_l1=math.nan),
        "battery power unknown": dict(good, battery_power=None),
        "battery SoC unknown": dict(good, battery_soc=None),
        "battery SoC nan": dict(good, battery_soc=math.nan),
        "reservation unknown": dict(good, reservation=math.inf),
    }
    consumers = [auto("p", request=2000, step_size=100),
                 ConsumerRequest(key="m", is_automatic=False)]
    for problem, fields in cases.items():
        result = allocate(AllocationInputs(**fields), consumers)  # type: ignore[arg-type]
        assert result.problem == problem
        assert result.allowances == {"p": 0, "m": 0} and result.steps == ()
        assert result.explanations == {"p": f"0 W: no grants, {problem}", "m": "0 W: manual"}


def test_malformed_consumer_gets_zero_and_the_others_are_served() -> None:
    bad = {
        "neg": auto("neg", request=-5, step_size=100),
        "zero": auto("zero", request=500, step_size=0),
        "nan": auto("nan", request=500, step_size=100, consumption=math.nan),
        "shift": auto("shift", request=500, step_size=100, priority_shift=-1),
    }
    fine = auto("fine", request=500, step_size=100, priority=200)
    result = allocate(sunny(5000), [*bad.values(), fine])
    assert result.allowances == {"neg": 0, "zero": 0, "nan": 0, "shift": 0, "fine": 500}
    assert result.explanations["neg"] == "0 W: invalid request -5"
    assert result.explanations["zero"] == "0 W: invalid step_size 0"
    assert result.explanations["nan"] == "0 W: invalid consumption nan"
    assert result.explanations["shift"] == "0 W: invalid priority_shift -1"


def test_tiny_steps_are_computed_not_iterated() -> None:
    consumers = [auto("ev", request=6000, step_size=1, minimum=1400, priority=10),
                 auto("h", request=11000, step_size=1, priority=20)]
    start = time.process_time()
    result = allocate(sunny(11000), consumers)
    assert time.process_time() - start < 0.05
    assert result.allowances == {"ev": 6000, "h": 4999}
    assert [(s.key, s.watts, s.count) for s in result.steps] == [
        ("ev", 1400, 1), ("ev", 1, 4600), ("h", 1, 4999)]


def test_alternating_tiny_steps_stop_after_max_rounds() -> None:
    pair = [auto(k, request=11000, step_size=1, priority_shift=1) for k in "ab"]
    start = time.process_time()
    result = allocate(sunny(11000), pair)
    assert time.process_time() - start < 0.1
    assert result.allowances == {"a": 500, "b": 500}
    assert result.explanations["a"] == ("granted 500 W: steps, priority 100; "
                                        "stopped after 1000 grants this cycle (steps too small)")


# -- properties ---------------------------------------------------------------------

watts = st.floats(min_value=0, max_value=12000, allow_nan=False)
consumer = st.builds(
    ConsumerRequest,
    key=st.text("abcdef", min_size=1, max_size=3),
    is_automatic=st.booleans(),
    consumption=watts,
    request=watts,
    step_size=st.sampled_from([1.0, 50.0, 100.0, 250.0, 333.3, 1000.0, 0.0]),
    minimum=st.sampled_from([0.0, 0.0, 500.0, 1365.0, 4000.0]),
    priority=st.integers(min_value=0, max_value=120).map(float),
    priority_shift=st.sampled_from([0.0, 0.0, 1.0, 5.0, 0.5]),
    ignore_bat_reservation=st.booleans(),
)
inputs = st.builds(
    AllocationInputs,
    grid_l1=st.floats(min_value=-12000, max_value=12000),
    grid_l2=st.none() | st.floats(min_value=-4000, max_value=4000),
    grid_l3=st.none() | st.floats(min_value=-4000, max_value=4000),
    battery_power=st.floats(min_value=-5000, max_value=5000),
    battery_soc=st.floats(min_value=0, max_value=100),
    reservation=st.floats(min_value=-1000, max_value=6000),
)


@settings(max_examples=300, deadline=None)
@given(inputs, st.lists(consumer, max_size=8, unique_by=lambda c: c.key),
       st.lists(st.text("abcdefg", min_size=1, max_size=3), unique=True))
def test_allocation_properties(readings: AllocationInputs, consumers: list[ConsumerRequest],
                               order: list[str]) -> None:
    state = AllocationState(tuple(order))
    result = allocate(readings, consumers, state)
    assert result == allocate(readings, consumers, state)
    assert set(result.allowances) == {c.key for c in consumers}
    total = sum(result.allowances.values())
    keeps = sum(w for c in consumers if not c.ignore_bat_reservation
                for w in [result.allowances[c.key]])
    assert total == 0 or total < result.available + 1e-6
    assert keeps == 0 or keeps < result.available - result.reservation + 1e-6
    assert math.isclose(result.remaining, result.available - total, abs_tol=1e-6)
    for c in consumers:
        given_w = result.allowances[c.key]
        assert given_w <= c.request + 1e-9
        assert given_w == 0 or given_w >= c.minimum
        assert c.is_automatic or given_w == 0
        assert result.explanations[c.key].startswith("granted" if given_w else "0 W")


anything = st.none() | st.floats() | st.integers(min_value=-10**400, max_value=10**400)
wild_consumer = st.builds(
    ConsumerRequest, key=st.text("xyz", min_size=1, max_size=2), is_automatic=st.booleans(),
    consumption=st.floats(), request=st.floats(), step_size=st.floats(), minimum=st.floats(),
    priority=st.floats(), priority_shift=st.floats(), ignore_bat_reservation=st.booleans())


@settings(max_examples=300, deadline=None)
@given(st.builds(AllocationInputs, grid_l1=anything, grid_l2=anything, grid_l3=anything,
                 battery_power=anything, battery_soc=anything, reservation=anything),
       st.lists(wild_consumer, max_size=5, unique_by=lambda c: c.key))
def test_any_numbers_give_an_allocation_never_an_exception(
        readings: AllocationInputs, consumers: list[ConsumerRequest]) -> None:
    result = allocate(readings, consumers)
    for c in consumers:
        given_w = result.allowances[c.key]
        assert given_w == 0 or (c.minimum <= given_w <= c.request and c.is_automatic)
    assert result.assigned == 0 or result.assigned < result.available


whole = st.integers(min_value=0, max_value=12000).map(float)
plain_consumer = st.builds(
    ConsumerRequest, key=st.text("abcdef", min_size=1, max_size=3), is_automatic=st.booleans(),
    consumption=whole, request=whole,
    step_size=st.sampled_from([50.0, 100.0, 250.0, 1000.0]),  # < MAX_ROUNDS grants
    minimum=st.sampled_from([0.0, 500.0, 1365.0]),
    priority=st.integers(min_value=0, max_value=60).map(float),
    priority_shift=st.sampled_from([0.0, 1.0, 5.0, 0.5]),
    ignore_bat_reservation=st.booleans())


@settings(max_examples=200, deadline=None)
@given(st.builds(AllocationInputs, grid_l1=st.integers(-12000, 3000).map(float),
                 battery_power=st.integers(-3000, 3000).map(float), battery_soc=st.just(50.0),
                 reservation=st.integers(-500, 4000).map(float)),
       st.lists(plain_consumer, max_size=6, unique_by=lambda c: c.key))
def test_runs_computed_at_once_equal_one_grant_per_pass(
        readings: AllocationInputs, consumers: list[ConsumerRequest]) -> None:
    result = allocate(readings, consumers)
    first_seen = tuple(c.key for c in consumers)
    assert result.allowances == one_grant_per_pass(readings, consumers, first_seen)
