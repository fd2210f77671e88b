"""The worked examples of docs/flows/solar-overhead-distributor.md are computed, not typed.

Each ```text block that starts with `# example: <name>` is parsed, run through
`nodes.energy.allocation.allocate`, and must show exactly its grants (in order, with
their priorities), every consumer's allowance and explanation, and the totals. A block
that starts with `# reservation: <formula>` must show what the distributor computes
from that formula at each SOC. The grammar of an example block, one statement a line:

    grid: -3000 W                          (L1 only) or  grid: L1 -1000 W, L2 -1000 W, L3 -1000 W
    battery: 0 W, SOC 50 %
    reservation: 500 W
    consumer A: priority 10, shift 1, step 500, minimum 1365, request 1000, consumption 0,
                manual, ignores reservation    (any of these, in any order; automatic unless manual)
    grant: A +500 W, priority 10
    allowance A: 1000 W, "granted 1000 W: ..."
    overhead: available 3000 W, assigned 2000 W, remaining 1000 W
    next cycle                             (the next cycle starts; its inputs are stated again)
    # a comment

Any other line is an error, so a typo cannot hide a number from the check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from conftest import ROOT

from nodes.energy.allocation import (
    AllocationInputs,
    AllocationState,
    ConsumerRequest,
    allocate,
)
from nodes.logic.expression import Expression

PAGE = ROOT / "docs" / "flows" / "solar-overhead-distributor.md"
EXAMPLES = {"reference", "priority-shift", "request-cut", "strict", "ignore-reservation",
            "overhead", "round-robin"}
"""Every worked example the page must keep (removing one fails too)."""
BLOCK = re.compile(r"^```text\n(# (example|reservation): .*?)^```$", re.M | re.S)

NUMBER = r"[+-]?[0-9]+(?:\.[0-9]+)?"
GRID_L1 = re.compile(rf"grid: ({NUMBER}) W")
GRID_PHASES = re.compile(rf"grid: L1 ({NUMBER}) W, L2 ({NUMBER}) W, L3 ({NUMBER}) W")
BATTERY = re.compile(rf"battery: ({NUMBER}) W, SOC ({NUMBER}) %")
RESERVATION = re.compile(rf"reservation: ({NUMBER}) W")
CONSUMER = re.compile(r"consumer (.+?): (.+)")
GRANT = re.compile(rf"grant: (.+?) \+({NUMBER}) W, priority ({NUMBER})")
ALLOWANCE = re.compile(rf'allowance (.+?): ({NUMBER}) W, "(.*)"')
OVERHEAD = re.compile(
    rf"overhead: available ({NUMBER}) W, assigned ({NUMBER}) W, remaining ({NUMBER}) W")
SOC_VALUE = re.compile(rf"SOC ({NUMBER}) %: ({NUMBER}) W")
FIELDS = {"priority": "priority", "shift": "priority_shift", "step": "step_size",
          "minimum": "minimum", "request": "request", "consumption": "consumption"}


@dataclass
class Cycle:
    """One cycle of an example: its inputs and what the page says comes out."""

    grid: tuple[float | None, float | None, float | None] | None = None
    battery: tuple[float, float] | None = None
    reservation: float | None = None
    consumers: list[ConsumerRequest] = field(default_factory=list)
    grants: list[tuple[str, float, float]] = field(default_factory=list)
    allowances: dict[str, tuple[float, str]] = field(default_factory=dict)
    overhead: tuple[float, float, float] | None = None


def blocks(text: str) -> dict[str, tuple[str, str]]:
    """(kind, body) of each computed block, by its name (the rest of its first line)."""
    found: dict[str, tuple[str, str]] = {}
    for match in BLOCK.finditer(text):
        first, _, body = match.group(1).partition("\n")
        name = first.split(": ", 1)[1].strip()
        assert name not in found, f"two blocks named {name!r}"
        found[name] = (match.group(2), body)
    return found


def parse_consumer(key: str, text: str) -> ConsumerRequest:
    values: dict[str, Any] = {"key": key, "is_automatic": True}
    for item in text.split(", "):
        if item == "manual":
            values["is_automatic"] = False
        elif item == "ignores reservation":
            values["ignore_bat_reservation"] = True
        else:
            name, _, number = item.partition(" ")
            if name not in FIELDS or not re.fullmatch(NUMBER, number):
                raise ValueError(f"consumer {key}: cannot read {item!r}")
            values[FIELDS[name]] = float(number)
    return ConsumerRequest(**values)


def parse_example(body: str) -> list[Cycle]:
    cycles = [Cycle()]
    for number, raw in enumerate(body.splitlines(), start=2):
        line, cycle = raw.strip(), cycles[-1]
        if not line or line.startswith("#"):
            continue
        if line == "next cycle":
            cycles.append(Cycle())
        elif m := GRID_PHASES.fullmatch(line):
            cycle.grid = (float(m[1]), float(m[2]), float(m[3]))
        elif m := GRID_L1.fullmatch(line):
            cycle.grid = (float(m[1]), None, None)
        elif m := BATTERY.fullmatch(line):
            cycle.battery = (float(m[1]), float(m[2]))
        elif m := RESERVATION.fullmatch(line):
            cycle.reservation = float(m[1])
        elif m := CONSUMER.fullmatch(line):
            cycle.consumers.append(parse_consumer(m[1], m[2]))
        elif m := GRANT.fullmatch(line):
            cycle.grants.append((m[1], float(m[2]), round(float(m[3]), 6)))
        elif m := ALLOWANCE.fullmatch(line):
            assert m[1] not in cycle.allowances, f"line {number}: {m[1]} twice"
            cycle.allowances[m[1]] = (float(m[2]), m[3])
        elif m := OVERHEAD.fullmatch(line):
            cycle.overhead = (float(m[1]), float(m[2]), float(m[3]))
        else:
            raise ValueError(f"line {number} of the block: cannot read {raw!r}")
    for i, cycle in enumerate(cycles, start=1):
        missing = [name for name in ("grid", "battery", "reservation", "overhead")
                   if getattr(cycle, name) is None]
        if missing or not cycle.consumers:
            raise ValueError(f"cycle {i}: no {', '.join(missing) or 'consumer'}")
    return cycles


def check_example(body: str) -> None:
    """Run each cycle (the state carried to the next) and compare with the page."""
    state = AllocationState()
    for i, cycle in enumerate(parse_example(body), start=1):
        assert cycle.grid is not None and cycle.battery is not None
        inputs = AllocationInputs(grid_l1=cycle.grid[0], grid_l2=cycle.grid[1],
                                  grid_l3=cycle.grid[2], battery_power=cycle.battery[0],
                                  battery_soc=cycle.battery[1], reservation=cycle.reservation)
        result = allocate(inputs, cycle.consumers, state)
        state = result.state
        assert result.problem is None, f"cycle {i}: {result.problem}"
        grants = [(key, float(watts), round(priority, 6))
                  for key, watts, priority in result.grants(cycle.consumers)]
        assert grants == cycle.grants, f"cycle {i}: the grants"
        shown = {key: (float(watts), result.explanations[key])
                 for key, watts in result.allowances.items()}
        assert shown == cycle.allowances, f"cycle {i}: the allowances"
        assert result.reservation == cycle.reservation, f"cycle {i}: the reservation"
        assert (result.available, result.assigned, result.remaining) == cycle.overhead, \
            f"cycle {i}: available, assigned, remaining"


def check_reservation(formula: str, body: str) -> None:
    """Each `SOC n %: w W` is what the distributor reserves: the formula, rounded, ≥ 0."""
    expression = Expression(formula)
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    assert lines, "no values"
    for line in lines:
        m = SOC_VALUE.fullmatch(line)
        if m is None:
            raise ValueError(f"cannot read {line!r}")
        result = expression.evaluate({"SOC": float(m[1])})
        assert isinstance(result, int | float)
        assert max(0.0, float(round(result))) == float(m[2]), f"{formula} at SOC {m[1]} %"


BLOCKS = blocks(PAGE.read_text(encoding="utf-8"))
EXAMPLE_BLOCKS = {name: body for name, (kind, body) in BLOCKS.items() if kind == "example"}
RESERVATION_BLOCKS = {name: body for name, (kind, body) in BLOCKS.items()
                      if kind == "reservation"}


def test_the_page_keeps_every_worked_example() -> None:
    assert set(EXAMPLE_BLOCKS) == EXAMPLES
    assert "(5750/(min(SOC,99)-100)+5750) + 250" in RESERVATION_BLOCKS


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_worked_example_is_what_allocate_computes(name: str) -> None:
    check_example(EXAMPLE_BLOCKS[name])


@pytest.mark.parametrize("formula", sorted(RESERVATION_BLOCKS))
def test_reservation_values_are_what_the_formula_gives(formula: str) -> None:
    check_reservation(formula, RESERVATION_BLOCKS[formula])


@pytest.mark.parametrize(("name", "old", "new"), [
    ("reference", "grant: B +1000 W", "grant: B +500 W"),
    ("reference", "remaining 1000 W", "remaining 900 W"),
    ("priority-shift", "priority 45.0001", "priority 45.0002"),
    ("priority-shift", "allowance EV: 4865 W", "allowance EV: 4866 W"),
    ("request-cut", "grant: filter +20 W", "grant: filter +100 W"),
    ("ignore-reservation", "minimum 1380 W\"", "minimum 1385 W\""),
    ("overhead", "battery: -400 W", "battery: -300 W"),
    ("round-robin", "grant: B +1000 W, priority 50", "grant: A +1000 W, priority 50"),
])
def test_an_edited_number_fails_the_check(name: str, old: str, new: str) -> None:
    body = EXAMPLE_BLOCKS[name]
    assert old in body
    with pytest.raises(AssertionError):
        check_example(body.replace(old, new, 1))


def test_a_dropped_grant_or_an_unreadable_line_fails_the_check() -> None:
    body = EXAMPLE_BLOCKS["priority-shift"]
    with pytest.raises(AssertionError):
        check_example(body.replace("grant: EV +250 W, priority 36.0001\n", "", 1))
    with pytest.raises(ValueError, match="cannot read"):
        check_example(body.replace("grant: EV +1365 W", "grant EV +1365 W", 1))
    with pytest.raises(ValueError, match="cannot read"):
        parse_consumer("EV", "priority 35, shfit 1")


def test_an_edited_reservation_fails_the_check() -> None:
    formula, body = next(iter(RESERVATION_BLOCKS.items()))
    with pytest.raises(AssertionError):
        check_reservation(formula, body.replace("5425 W", "5452 W", 1))


def test_the_parsed_consumer_is_the_one_described() -> None:
    parsed = parse_consumer("EV", "priority 20, minimum 1380, step 250, request 11000, "
                                  "ignores reservation")
    expected = ConsumerRequest(key="EV", is_automatic=True, priority=20, minimum=1380,
                               step_size=250, request=11000, ignore_bat_reservation=True)
    assert parsed == expected
    assert parse_consumer("pump", "manual, consumption 400") == \
        replace(ConsumerRequest(key="pump", is_automatic=False), consumption=400)
