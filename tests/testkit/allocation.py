"""The allocation rules done the slow, obvious way, as the original es-ESS loops: the
oracle the allocation tests compare `allocate` with, and the reference bench/distributor.py
times it against."""

from __future__ import annotations

from nodes.energy.allocation import AllocationInputs, ConsumerRequest

__all__ = ["one_grant_per_pass"]


def one_grant_per_pass(inputs: AllocationInputs, consumers: list[ConsumerRequest],
                       order: tuple[str, ...]) -> dict[str, float]:
    """The rules done the slow, obvious way (as the original loops): re-sort, walk the
    list, give one grant to the first consumer that can take one, repeat."""
    phases = [p for p in (inputs.grid_l1, inputs.grid_l2, inputs.grid_l3) if p is not None]
    assert inputs.battery_power is not None and inputs.reservation is not None
    draw = sum(c.consumption for c in consumers if c.is_automatic)
    left = max(0.0, -sum(phases) + draw + inputs.battery_power)
    reserve = max(0.0, inputs.reservation)
    share = {c.key: 0.0 for c in consumers}
    prio = {c.key: 0.0 if c.ignore_bat_reservation else c.priority for c in consumers}
    grants = dict.fromkeys(share, 0)
    rank = {key: i for i, key in enumerate(order)}
    while True:
        for c in sorted(consumers, key=lambda c: (prio[c.key], grants[c.key], rank[c.key])):
            done = share[c.key]
            if not c.is_automatic or done >= c.request or c.minimum > c.request:
                continue
            size = (c.minimum if done == 0 and c.minimum > 0
                    else min(c.step_size, c.request - done))
            if size < (left if c.ignore_bat_reservation else left - reserve):
                share[c.key] += size
                left -= size
                if c.priority_shift > 0:
                    prio[c.key] += c.priority_shift
                    grants[c.key] += 1
                break
        else:
            return share
