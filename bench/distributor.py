"""Distributor benchmark: one solar overhead allocation, 50 consumers, 11 kW in 100 W steps.

Prints microseconds per allocation (median of many runs, process time) for
`nodes.energy.allocation.allocate`, and for a reference side by side: the same rules
done as the original does them, one pass over the re-sorted consumers per grant (a
straightforward loop; its allowances are checked to be the same). The ratio is what to
watch; the absolute numbers depend on the machine (a Cerbo GX is about ten times
slower). Scenarios: `mixed` (priorities 10..110, a third shifted, some with a minimum or
ignoring the reservation) and `round-robin` (all equal and shifted: one grant at a time,
the worst case for runs).

The full cycle goes through the `energy.distributor` node in a running flow: the 50
`mixed` consumers join over MQTT (the embedded broker of `sim`, in this process), and
one cycle is timed from its start until its end (CPU time of the node's part: the
allocation, 50 allowances handed to their publishers, explanations, timestamps and
energy counts), side by side with `allocate` alone on the same consumers. What the
broker and the publishers then do is socket work of the connection, not of the cycle.

    .venv/bin/python bench/distributor.py [--runs 2000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
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


async def cycle_us(runs: int) -> tuple[float, float]:
    """Median CPU µs of one distributor cycle with the 50 mixed consumers, and of
    `allocate` on the same requests in the same process."""
    import tempfile
    import textwrap

    from flowengine.connections import Connections
    from flowengine.loader import load_flow
    from flowengine.plan import plan_flow
    from flowengine.registry import Registry
    from flowengine.runtime import Runtime
    from nodes.energy.distributor import EnergyDistributor
    from nodes.mqtt.broker import Broker
    from sim.broker import MqttBroker

    logging.disable(logging.WARNING)  # 50 "safe state applied" lines at the stop
    registry = Registry.default(plugins=False)
    async with MqttBroker() as server:
        host, _, port = server.address.rpartition(":")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "flow.yaml"
            path.write_text(textwrap.dedent("""
                id: bench
                nodes:
                  - {id: requests, type: mqtt.in, payload: string, to: [distributor],
                     topic: es-ESS/SolarOverheadDistributor/Requests/+/+}
                  - {id: distributor, type: energy.distributor, cycle_s: 3600, rerun_ms: 600000,
                     fake_bms: false, max_consumers: 50, to: {consumers: [out], energy: [out]}}
                  - {id: out, type: mqtt.out,
                     topic: "es-ESS/SolarOverheadDistributor/Requests/{topic}"}
            """))
            runtime = Runtime(registry, connections=Connections(
                registry.connection_kinds, {"mqtt": {"main": {"host": host, "port": int(port),
                                                              "status_topic": None}}}))
            try:
                flow = await runtime.start_flow(plan_flow(load_flow(path), registry))
                node = flow.runners["distributor"].node
                assert isinstance(node, EnergyDistributor)
                broker: Broker = await runtime.connections.get("mqtt", "main")
                await broker.wait_connected(5)
                for name, value in (("grid_l1", -3000), ("grid_l2", -4000), ("grid_l3", -3500),
                                    ("battery_power", 500), ("soc", 60)):
                    node._system_value(name, value)
                for c in mixed():
                    for field, v in (("IsAutomatic", c.is_automatic), ("Request", c.request),
                                     ("StepSize", c.step_size), ("Minimum", c.minimum),
                                     ("Priority", int(c.priority)),
                                     ("PriorityShift", c.priority_shift),
                                     ("IgnoreBatReservation", c.ignore_bat_reservation),
                                     ("Consumption", 0)):
                        text = str(v).lower() if isinstance(v, bool) else str(v)
                        broker.publish(f"es-ESS/SolarOverheadDistributor/Requests/{c.key}/{field}",
                                       text, qos=1)
                deadline = time.monotonic() + 10
                while len(node._known) < 50 or any(
                        len(k.consumer.values) < 8 for k in node._known.values()):
                    assert time.monotonic() < deadline, "the consumers did not all arrive"
                    await asyncio.sleep(0.05)
                await node._cycle("bench")  # spawns the 50 allowance publishers
                assert node.last is not None and node.last.assigned > 0
                times = []
                for _ in range(runs):
                    start = time.process_time_ns()
                    await node._cycle("bench")
                    times.append(time.process_time_ns() - start)
                    await asyncio.sleep(0)  # let the publishers and the socket work
                requests = [k.consumer.request() for k in node._known.values()]
                alone = median_us(lambda: allocate(node._inputs()[0], requests), runs)
                return statistics.median(times) / 1000, alone
            finally:
                await runtime.stop()


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
    cycle, alone = asyncio.run(cycle_us(max(20, args.runs // 10)))
    result["cycle"] = {"cycle_us": cycle, "allocate_us": alone, "ratio": cycle / alone}
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
    c = result["cycle"]
    assert isinstance(c, dict)
    print(f"one cycle of the energy.distributor node, 50 consumers: {c['cycle_us']:.0f} µs "
          f"(allocate alone {c['allocate_us']:.0f} µs, ratio {c['ratio']:.1f})")


if __name__ == "__main__":
    main()
