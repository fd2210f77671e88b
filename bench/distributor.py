"""Distributor benchmark: one solar overhead allocation, 50 consumers, 11 kW in 100 W steps.

Prints microseconds per allocation (median of many runs, process time) for
`nodes.energy.allocation.allocate`, and for a reference side by side: the same rules
done as the original does them, one pass over the re-sorted consumers per grant (a
straightforward loop; its allowances are checked to be the same). The ratio is what to
watch; the absolute numbers depend on the machine (a Cerbo GX is about ten times
slower). Scenarios: `mixed` (priorities 10..110, a third shifted, some with a minimum or
ignoring the reservation) and `round-robin` (all equal and shifted: one grant at a time,
the worst case for runs). The full cycle through the distributor node is measured once
that node exists.

    .venv/bin/python bench/distributor.py [--runs 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the reference lives with the tests

from testkit.allocation import one_grant_per_pass  # noqa: E402

from nodes.energy.allocation import AllocationInputs, ConsumerRequest, allocate  # noqa: E402

INPUTS = AllocationInputs(grid_l1=-3000, grid_l2=-4000, grid_l3=-3500, battery_power=500,
                          battery_soc=60, reservation=0)  # 11 kW available


def mixed() -> list[ConsumerRequest]:
    return [ConsumerRequest(key=f"c{i}", is_automatic=i % 10 != 9, consumption=0,
                            request=200 + 100 * (i % 7), step_size=100,
                            minimum=300 if i % 5 == 0 else 0, priority=10 + 2 * i,
                            priority_shift=1 if i % 3 == 0 else 0,
                            ignore_bat_reservation=i % 17 == 0)
            for i in range(50)]


def reference_of(consumers: list[ConsumerRequest]) -> dict[str, float]:
    """The reference: re-sort and walk the list for every single grant (first seen first)."""
    return one_grant_per_pass(INPUTS, consumers, tuple(c.key for c in consumers))


def round_robin() -> list[ConsumerRequest]:
    return [ConsumerRequest(key=f"c{i}", is_automatic=True, request=1000, step_size=100,
                            priority=50, priority_shift=1) for i in range(50)]


def median_us(run: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.process_time_ns()
        run()
        times.append(time.process_time_ns() - start)
    return statistics.median(times) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result: dict[str, object] = {"consumers": 50, "available_w": 11000, "step_w": 100}
    for name, build in (("mixed", mixed), ("round-robin", round_robin)):
        consumers = build()
        ours = allocate(INPUTS, consumers)
        assert ours.allowances == reference_of(consumers), name
        engine = median_us(lambda c=consumers: allocate(INPUTS, c), args.runs)
        reference = median_us(lambda c=consumers: reference_of(c), max(10, args.runs // 20))
        result[name] = {"allocate_us": engine, "reference_us": reference,
                        "ratio": engine / reference, "grants": sum(s.count for s in ours.steps),
                        "assigned_w": ours.assigned}
    result["cycle_us"] = None
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print("one allocation: 50 consumers, 11 kW available, 100 W steps "
          f"(median of {args.runs} runs, CPU time)")
    print(f"{'':14}{'grants':>8}{'allocate µs':>14}{'reference µs':>15}{'ratio':>8}")
    for name in ("mixed", "round-robin"):
        r = result[name]
        assert isinstance(r, dict)
        print(f"{name:14}{r['grants']:>8}{r['allocate_us']:>14.0f}{r['reference_us']:>15.0f}"
              f"{r['ratio']:>8.2f}")
    print("reference: one pass over the re-sorted consumers per grant, as the original does")
    print("full cycle through the distributor node: not measured yet (waits for the node)")


if __name__ == "__main__":
    main()
