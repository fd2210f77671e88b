"""Solar overhead allocation: who gets how much of the surplus, and why (pure, no I/O).

The algorithm of es-ESS's SolarOverheadDistributor, as one function the distributor
node calls once per cycle:

- **available** = max(0, feed-in + what the automatic consumers draw now + battery
  power), where feed-in = -(L1 + L2 + L3) over the phases that exist (+ = import, so
  export is negative) and battery power is signed (+ = charging): a discharging battery
  lowers the overhead, because part of what the consumers draw comes from it.
- The **reservation** R (W, from the user's formula in the node, clamped at 0 here) is
  the part the battery keeps: a consumer's grant g is given only while g < O - R, where
  O is the overhead still unassigned (strict, as the original: a grant exactly equal to
  what is left is refused). A consumer with `ignore_bat_reservation` needs only g < O,
  and its priority counts as 0, so it is served before everyone else.
- Grants go **one at a time to the first consumer in priority order that can take one**
  (lower priority first, default 100). The first grant is `minimum` (if > 0), every
  later one `step_size`; the last one is cut to what is left of `request`, so no total
  exceeds its request. After each grant a consumer with `priority_shift` > 0 moves back
  by the shift plus a tie-breaker: at equal priority the consumer with fewer grants goes
  first, and a consumer shifted onto a value loses against one whose own priority is that
  value. The tie-breaker is the original's "+ 0.0001 per grant", kept exactly as a second
  sort key (grants so far), so it never outweighs a real priority difference.
- Still equal: the order in `AllocationState` (first seen first). After each cycle the
  consumers that wanted power and got none move to the front of it, so with equal
  settings and too little for all, the grant goes round robin from cycle to cycle.
- A consumer whose next grant does not fit now never fits later in the same cycle (O
  only shrinks), so each is dropped once; a run of grants that goes to one consumer
  (no shift, or until its shift lets the next one in) is computed at once, so 1 W steps
  over 11 kW without shift cost what 1000 W steps cost. Grants that alternate between
  consumers are one heap operation each; they are capped at `MAX_ROUNDS` per cycle
  (1000, far above 11 kW in 100 W steps) so a pathological setup (two shifted consumers
  with 1 W steps) stays quick: what is left then stays unassigned (the safe side) and
  the explanations say so.

Worked example (the reference's): O = 3000, R = 500; A: priority 10, step 500, request
1000; B: priority 20, step 1000, request 2000. A +500 (O 2500), A +500 (O 2000, A is
full), B +1000 (O 1000), B's next 1000 is not < 1000 - 500: stop. A = 1000, B = 1000,
the remaining 1000 W (with the 500 W reserved) goes to the battery or the grid.

Invalid data never raises: a system input that is unknown or not a number (no grid
phase, battery power or SoC None, NaN, a reservation that is not a number) means no
grants at all, every allowance 0 and `problem` saying why; a consumer with a malformed
field (negative request, step 0, NaN, ...) gets 0 with the reason and the others are
served (its draw is counted as 0, the safe side). Manual consumers get 0. Only
programming errors raise (two consumers with the same key).
"""

from __future__ import annotations

import heapq
import math
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

TIE_BREAK = 0.0001
"""What the original adds to a shifted priority per grant; shown in `Step.priority`."""
MAX_W = 1_000_000.0
"""Any power beyond this (1 MW, in either direction) is not a reading but a fault."""
MAX_ROUNDS = 1000
"""Grant operations per cycle (a run of grants to one consumer is one); then stop."""
MIN_STEP_W = 0.01
"""The smallest step size; a smaller one is malformed (and would make counts huge)."""


@dataclass(frozen=True, kw_only=True)
class AllocationInputs:
    """One cycle's system readings, W.

    A phase that does not exist is None (a single-phase site: L2 and L3); the node knows
    which phases exist and passes an existing phase that is invalid as NaN, which means
    no grants, as does an unknown battery power or SoC. The reservation is computed by
    the node from the user's formula; what the automatic consumers draw comes from their
    `consumption`, so there is one source for it.
    """

    grid_l1: float | None
    grid_l2: float | None = None
    grid_l3: float | None = None
    battery_power: float | None  # + = charging
    battery_soc: float | None  # %, 0..100
    reservation: float | None  # W the battery keeps; < 0 counts as 0


@dataclass(frozen=True, kw_only=True)
class ConsumerRequest:
    """One consumer's request, as published under `Requests/<key>/...`."""

    key: str
    is_automatic: bool
    consumption: float = 0.0  # W it draws now
    request: float = 0.0  # W it would ever take
    step_size: float = 0.0
    minimum: float = 0.0
    priority: float = 100.0  # lower first
    priority_shift: float = 0.0
    ignore_bat_reservation: bool = False


@dataclass(frozen=True)
class AllocationState:
    """Carried from one cycle to the next: the tie-break order of consumer keys.

    Keys are kept in first-seen order, consumers that wanted power and got none last
    cycle first (round robin among equals); new keys go last, gone keys are dropped.
    The node keeps `Allocation.state` and passes it to the next call (and may persist it).
    """

    order: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    """`count` consecutive grants of `watts` each to `key`; `priority` is the original's
    effective priority at the first of them (the next ones add shift + 0.0001 each)."""

    key: str
    watts: float
    count: int
    priority: float
    reason: str  # "minimum" or "step" (the last step of a request may be cut)


@dataclass(frozen=True)
class Allocation:
    """One cycle's result: W per consumer key (every key, 0 for manual or malformed), why,
    the grants in the order given, the totals, and the state for the next cycle."""

    allowances: dict[str, float]
    explanations: dict[str, str]
    steps: tuple[Step, ...]
    available: float
    reservation: float
    assigned: float
    remaining: float  # available - assigned (the reservation is part of it)
    feed_in: float
    automatic_draw: float
    state: AllocationState
    problem: str | None = None  # why nothing was granted, when an input is invalid

    def grants(self, consumers: Sequence[ConsumerRequest]) -> Iterator[tuple[str, float, float]]:
        """Each single grant as (key, watts, priority), in order, as the README lists them."""
        move = {c.key: c.priority_shift + TIE_BREAK if c.priority_shift > 0 else 0.0
                for c in consumers}
        for step in self.steps:
            for j in range(step.count):
                yield step.key, step.watts, round(step.priority + j * move[step.key], 6)


def allocate(inputs: AllocationInputs, consumers: Sequence[ConsumerRequest],
             state: AllocationState | None = None) -> Allocation:
    """Share the overhead among `consumers`; see the module docstring for the rules."""
    keys = [c.key for c in consumers]
    if len(set(keys)) != len(keys):
        twice = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"duplicate consumer keys: {twice}")
    order = _order(state or AllocationState(), keys)
    explanations: dict[str, str] = {}
    draw = 0.0
    for c in consumers:
        if not c.is_automatic:
            explanations[c.key] = "0 W: manual"
        elif (bad := _invalid(c)) is not None:
            explanations[c.key] = f"0 W: invalid {bad}"
        else:
            draw += c.consumption
    phases = [p for p in (inputs.grid_l1, inputs.grid_l2, inputs.grid_l3) if p is not None]
    problem = _system_problem(inputs, phases)
    if problem is not None:
        for c in consumers:
            explanations.setdefault(c.key, f"0 W: no grants, {problem}")
        return Allocation({c.key: 0.0 for c in consumers}, explanations, (), 0.0, 0.0, 0.0, 0.0,
                          0.0, 0.0, AllocationState(order), problem)
    assert inputs.battery_power is not None and inputs.reservation is not None
    feed_in = -math.fsum(phases)
    available = max(0.0, feed_in + draw + inputs.battery_power)
    reservation = max(0.0, float(inputs.reservation))
    index = {key: i for i, key in enumerate(order)}
    wanting = [c for c in consumers if c.key not in explanations]
    granted, steps, stops = _grant(wanting, index, available, reservation)
    for c in wanting:
        explanations[c.key] = _explain(c, granted[c.key], stops[c.key], reservation)
    allowances = {c.key: granted.get(c.key, 0.0) for c in consumers}
    assigned = math.fsum(allowances.values())
    starved = {c.key for c in wanting if granted[c.key] == 0.0 and c.request > 0}
    next_order = tuple([k for k in order if k in starved] + [k for k in order if k not in starved])
    return Allocation(allowances, explanations, tuple(steps), available, reservation, assigned,
                      available - assigned, feed_in, draw, AllocationState(next_order))


def _order(state: AllocationState, keys: Iterable[str]) -> tuple[str, ...]:
    present = list(keys)
    known = set(present)
    kept = [k for k in state.order if k in known]
    seen = set(kept)
    return tuple(kept + [k for k in present if k not in seen])


def _system_problem(inputs: AllocationInputs, phases: list[float]) -> str | None:
    if not phases:
        return "grid power unknown"
    if not all(_finite(p) for p in phases):
        return "grid power not a number"
    if any(abs(p) > MAX_W for p in phases):
        return f"grid power {_num(max(phases, key=abs))} W beyond {_num(MAX_W)} W"
    if inputs.battery_power is None or not _finite(inputs.battery_power):
        return "battery power unknown"
    if abs(inputs.battery_power) > MAX_W:
        return f"battery power {_num(inputs.battery_power)} W beyond {_num(MAX_W)} W"
    soc = inputs.battery_soc
    if soc is None or not _finite(soc) or not 0.0 <= soc <= 100.0:
        return f"battery SoC {'unknown' if soc is None else _num(soc)}"
    if inputs.reservation is None or not _finite(inputs.reservation):
        return "reservation unknown"
    if inputs.reservation > MAX_W:
        return f"reservation {_num(inputs.reservation)} W beyond {_num(MAX_W)} W"
    return None


def _invalid(c: ConsumerRequest) -> str | None:
    """The first malformed field of an automatic consumer, as `name value`, or None."""
    for name in ("consumption", "request", "minimum"):
        value = getattr(c, name)
        if not _finite(value) or not 0 <= value <= MAX_W:
            return f"{name} {_num(value)}"
    fixed = c.step_size == 0 and c.minimum > 0  # only its minimum, as the original allows
    if not _finite(c.step_size) or not (fixed or MIN_STEP_W <= c.step_size <= MAX_W):
        return f"step_size {_num(c.step_size)}"
    if not _finite(c.priority):
        return f"priority {_num(c.priority)}"
    if not _finite(c.priority_shift) or c.priority_shift < 0:
        return f"priority_shift {_num(c.priority_shift)}"
    return None


def _finite(value: object) -> bool:
    """A real number within float range (an int of 400 digits is not; bool is not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return -sys.float_info.max <= value <= sys.float_info.max  # False for NaN, exact for int


@dataclass
class _Stop:
    """Why a consumer's grants ended: request reached, or the next grant did not fit."""

    full: bool = False
    capped: bool = False  # MAX_ROUNDS reached while it could still take more
    next_watts: float = 0.0
    left: float = 0.0  # O - R (or O when ignoring) when it was refused


def _grant(wanting: list[ConsumerRequest], index: dict[str, int], available: float,
           reservation: float) -> tuple[dict[str, float], list[Step], dict[str, _Stop]]:
    granted = {c.key: 0.0 for c in wanting}
    grants = {c.key: 0 for c in wanting}  # grants so far, the tie-breaker
    stops = {c.key: _Stop() for c in wanting}
    by_key = {c.key: c for c in wanting}
    steps: list[Step] = []
    heap = [(*_sort_key(c, 0), index[c.key], c.key) for c in wanting]
    heapq.heapify(heap)
    left = available  # O
    rounds = 0
    while heap:
        if rounds == MAX_ROUNDS:
            for *_, key in heap:
                stops[key].capped = True
            break
        _, _, idx, key = heapq.heappop(heap)
        c = by_key[key]
        done, n = granted[key], grants[key]
        room = left if c.ignore_bat_reservation else left - reservation
        rest = c.request - done
        if rest <= 0 or (done > 0 and c.step_size == 0) or \
                (done == 0 and c.minimum > c.request):
            stops[key].full = rest <= 0 or c.step_size == 0
            stops[key].next_watts = c.minimum if done == 0 else 0.0
            continue
        first = done == 0 and c.minimum > 0
        size = c.minimum if first else min(c.step_size, rest)
        if not size < room:
            stops[key] = _Stop(next_watts=size, left=room)
            continue
        count = 1
        if not first and size == c.step_size:
            # a run of full steps: as many as fit the request, the room and the order
            count = min(_fits(rest, size), _fits_room(room, size))
            if heap and c.priority_shift > 0 and count > 1:
                count = _run(c, n, idx, heap[0][:3], count)
        rounds += 1
        granted[key] = min(c.request, done + size * count)  # never above, not even by an ulp
        grants[key] = n + count
        left -= size * count
        shown = _base(c) + n * (c.priority_shift + TIE_BREAK) if c.priority_shift > 0 else _base(c)
        steps.append(Step(key, size, count, round(shown, 6), "minimum" if first else "step"))
        heapq.heappush(heap, (*_sort_key(c, n + count), idx, key))
    return granted, steps, stops


def _base(c: ConsumerRequest) -> float:
    return 0.0 if c.ignore_bat_reservation else c.priority


def _sort_key(c: ConsumerRequest, n: int) -> tuple[float, int]:
    if c.priority_shift > 0:
        return (_base(c) + n * c.priority_shift, n)
    return (_base(c), 0)


def _fits(rest: float, size: float) -> int:
    """Full steps of `size` that keep the total within the request (at least 1 here)."""
    count = max(1, int(rest // size))
    while count > 1 and count * size > rest:
        count -= 1
    return count


def _fits_room(room: float, size: float) -> int:
    """Steps t = 1.. that each pass the strict test size < room - (t-1) x size."""
    count = max(1, math.ceil(room / size) - 1)
    while count > 1 and not count * size < room:
        count -= 1
    while (count + 1) * size < room:
        count += 1
    return count


def _run(c: ConsumerRequest, n: int, idx: int, top: tuple[float, int, int], most: int) -> int:
    """How many grants in a row go to `c` (it has just won one) before `top` comes first."""
    if not (*_sort_key(c, n + 1), idx) < top:
        return 1  # the usual case with a shift: the next grant is someone else's
    low, high = 2, most  # grant 1 is c's; grant j + 1 is c's while its key after j < top
    while low < high:
        mid = (low + high + 1) // 2
        if (*_sort_key(c, n + mid - 1), idx) < top:
            low = mid
        else:
            high = mid - 1
    return low


def _explain(c: ConsumerRequest, total: float, stop: _Stop, reservation: float) -> str:
    if c.request == 0:
        return "0 W: request 0 W"
    if total == 0 and c.minimum > c.request:
        return f"0 W: minimum {_num(c.minimum)} W above request {_num(c.request)} W"
    what = "minimum" if total == 0 and c.minimum > 0 else "step"
    if stop.full:
        end = "request reached" if total >= c.request else "its minimum only (step size 0)"
    elif stop.capped:
        end = f"stopped after {MAX_ROUNDS} grants this cycle (steps too small)"
    elif c.ignore_bat_reservation:
        ignored = " (reservation ignored)" if total == 0 else ""
        end = f"{_num(stop.left)} W left{ignored}, {what} {_num(stop.next_watts)} W"
    elif reservation > 0:
        end = (f"reservation {_num(reservation)} W leaves {_num(max(0.0, stop.left))} W, "
               f"{what} {_num(stop.next_watts)} W")
    else:
        end = f"{_num(stop.left)} W left, {what} {_num(stop.next_watts)} W"
    if total == 0:
        return f"0 W: {end}"
    made = "steps"
    if c.minimum > 0:
        more = total - c.minimum
        made = "minimum" if more <= 0 else f"minimum + {_num(more)} W in steps"
    ignores = ", reservation ignored" if c.ignore_bat_reservation else ""
    return f"granted {_num(total)} W: {made}, priority {_num(c.priority)}{ignores}; {end}"


def _num(value: object) -> str:
    """A number as the explanations show it: whole watts, or one decimal."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return repr(value)[:40]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if not _finite(value):
        return "out of range"
    if abs(value) > MAX_W:
        return f"{value:.3g}"
    return f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"
