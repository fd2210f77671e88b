"""http.poll and shelly.meter against the simulated Shellys over real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import eventually, run

from flowengine.jsontext import MAX_DEPTH
from flowengine.loader import Secrets, load_flow
from flowengine.model import Message
from flowengine.plan import plan_flow
from flowengine.registry import Registry
from flowengine.runner import NodeRunner
from flowengine.runtime import FlowRun, Runtime
from nodes.devices.shelly import detect_model
from nodes.http.session import (
    DeviceUnreachable,
    HttpSessionConfig,
    decode_json,
    open_session,
)
from sim import EnergyModel, mixed_phases_noon
from sim.devices import Shelly3EMGen1, ShellyPlus1PM, ShellyPMMiniGen3, ShellyPro3EM

PASSWORD = "s3cret-pass"


class Seen:
    """Every message a flow's nodes emitted, with the time it came."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Message]] = []

    def __call__(self, runner: NodeRunner, port: str, msg: Message) -> None:
        self.items.append((runner.node_id, msg))

    def latest(self, topic: str) -> object:
        values = [m.value for _, m in self.items if m.topic == topic]
        return values[-1] if values else "never seen"

    def values(self, topic: str) -> list[object]:
        return [m.value for _, m in self.items if m.topic == topic]

    def times(self, topic: str) -> list[float]:
        return [m.ts for _, m in self.items if m.topic == topic]


@contextlib.asynccontextmanager
async def running(flow_yaml: str, tmp: Path) -> AsyncIterator[tuple[FlowRun, Seen]]:
    registry = Registry.default(plugins=False)
    path = tmp / "flow.yaml"
    path.write_text(textwrap.dedent(flow_yaml))
    secrets = Secrets(None, {"ESESS_SECRET_SHELLY": PASSWORD})
    plan = plan_flow(load_flow(path, secrets=secrets), registry)
    runtime = Runtime(registry)
    seen = Seen()
    try:
        yield await runtime.start_flow(plan, tap=seen), seen
    finally:
        await runtime.stop()


def model() -> EnergyModel:
    """Noon with an oven on L1: L1 imports while L2 and L3 export."""
    return mixed_phases_noon(seed=5, settle_s=60)


def meter_flow(url: str, **options: object) -> str:
    host = url.removeprefix("http://")
    settings: dict[str, object] = {"interval_ms": 100, "timeout_ms": 300, **options}
    extra = "".join(f", {k}: {v}" for k, v in settings.items())
    return f"""
        id: meter
        nodes:
          - {{id: shelly, type: shelly.meter, host: "{host}", password: !secret shelly{extra}}}
    """


def test_gen1_3em_is_found_and_read_with_basic_auth(tmp_path: Path) -> None:
    async def scenario() -> None:
        m = model()
        async with Shelly3EMGen1(m, password=PASSWORD) as device, \
                running(meter_flow(device.url), tmp_path) as (run_, seen):
            await eventually(lambda: seen.latest("L3/power") != "never seen", 3)
            grid = m.snapshot.grid_l
            assert seen.latest("L1/power") == pytest.approx(grid[0], abs=0.1)
            assert seen.latest("L2/power") == pytest.approx(grid[1], abs=0.1)
            assert grid[0] > 0 > grid[1]  # the case gross/net metering is about
            emeter = device.emeter(0)
            assert seen.latest("L1/energy_forward") == pytest.approx(emeter["total"] / 1000)
            assert run_.runners["shelly"].node.model == "gen1-3em"  # type: ignore[union-attr]
            assert run_.runners["shelly"].status.level == "ok"

    run(scenario())


def test_pro3em_is_read_with_sha256_digest_auth(tmp_path: Path) -> None:
    async def scenario() -> None:
        m = model()
        async with ShellyPro3EM(m, password=PASSWORD) as device, \
                running(meter_flow(device.url), tmp_path) as (run_, seen):
            await eventually(lambda: seen.latest("power") != "never seen", 3)
            status = device.em_status()
            assert seen.latest("power") == pytest.approx(status["total_act_power"])
            assert seen.latest("L2/voltage") == pytest.approx(status["b_voltage"])
            assert isinstance(seen.latest("energy_reverse"), float)
            assert run_.runners["shelly"].status.text == "online (pro3em)"

    run(scenario())


def test_pm_mini_reads_one_phase(tmp_path: Path) -> None:
    async def scenario() -> None:
        m = model()
        async with ShellyPMMiniGen3(m, password=PASSWORD) as device, \
                running(meter_flow(device.url, phases=1), tmp_path) as (_, seen):
            await eventually(lambda: seen.latest("power") != "never seen", 3)
            assert seen.latest("power") == pytest.approx(m.snapshot.pv_ac_l[0], abs=0.1)
            assert seen.latest("voltage") is not None
            assert "L1/power" not in {msg.topic for _, msg in seen.items}
            assert seen.values("connected") == [1]

    run(scenario())


def test_wrong_password_shows_offline_with_the_reason(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with ShellyPro3EM(model(), password="another") as device, \
                running(meter_flow(device.url, offline_after=2), tmp_path) as (run_, _):
            runner = run_.runners["shelly"]
            await eventually(lambda: runner.status.level == "error", 3)
            assert "wrong credentials" in runner.status.text
            assert PASSWORD not in runner.status.text

    run(scenario())


def test_shelly_offline_after_three_timeouts_and_back(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        m = model()
        async with Shelly3EMGen1(m, password=PASSWORD) as device, \
                running(meter_flow(device.url, timeout_ms=100), tmp_path) as (run_, seen):
            runner = run_.runners["shelly"]
            await eventually(lambda: runner.status.level == "ok", 3)
            device.faults.hang()
            await eventually(lambda: runner.status.level == "error", 3)
            assert "offline" in runner.status.text
            assert seen.latest("L1/power") is None and seen.latest("power") is None
            assert seen.values("connected") == [1, 0]
            polls = runner.node.polls  # type: ignore[union-attr]
            await eventually(lambda: runner.node.polls >= polls + 3, 3)  # type: ignore[union-attr]
            device.faults.clear()
            await eventually(lambda: runner.status.level == "ok", 3)
            assert isinstance(seen.latest("L1/power"), float)
            assert seen.values("connected") == [1, 0, 1]

    with caplog.at_level(logging.INFO):
        run(scenario())
    offline = [r for r in caplog.records if "offline after" in r.getMessage()]
    back = [r for r in caplog.records if "back online" in r.getMessage()]
    assert len(offline) == 1 and len(back) == 1  # a transition is logged once, not per poll


def test_next_poll_waits_for_the_slow_answer(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with ShellyPMMiniGen3(model()) as device:
            device.faults.slow(0.3)
            async with running(meter_flow(device.url, timeout_ms=2000, phases=1),
                               tmp_path) as (_, seen):
                await eventually(lambda: len(seen.times("power")) >= 3, 5)
                times = seen.times("power")
                gaps = [b - a for a, b in itertools.pairwise(times)]
                # 0.3 s answer + 0.1 s interval from its end; a fixed 0.1 s beat would pile up
                assert min(gaps) >= 0.38

    run(scenario())


def test_polls_start_on_the_runtime_grid_whenever_the_flow_starts(tmp_path: Path) -> None:
    """Polls start at the runtime clock's origin plus multiples of the interval, so they
    share the wake-up of every other timer of that interval; a flow started half an
    interval off the grid polls once at once, then on the grid."""
    interval = 0.5

    async def scenario() -> None:
        async with ShellyPMMiniGen3(model()) as device:
            registry = Registry.default(plugins=False)
            path = tmp_path / "flow.yaml"
            path.write_text(textwrap.dedent(meter_flow(device.url, interval_ms=500,
                                                       phases=1)))
            secrets = Secrets(None, {"ESESS_SECRET_SHELLY": PASSWORD})
            plan = plan_flow(load_flow(path, secrets=secrets), registry)
            runtime = Runtime(registry)
            seen = Seen()
            try:
                origin = runtime.clock.origin
                await asyncio.sleep(origin + interval * 1.5 - runtime.clock.monotonic())
                await runtime.start_flow(plan, tap=seen)
                await eventually(lambda: len(seen.times("power")) >= 5, 5)
            finally:
                await runtime.stop()
            times = seen.times("power")
            phases = [(t - origin) % interval for t in times]
            assert phases[0] >= 0.2  # the first poll at once, off the grid
            assert all(phase < 0.15 for phase in phases[1:]), phases  # then on its ticks
            assert all(0.35 < b - a < 0.65 for a, b in itertools.pairwise(times[1:]))

    run(scenario())


def test_garbage_answer_counts_as_a_failed_poll(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with ShellyPMMiniGen3(model()) as device, \
                running(meter_flow(device.url, phases=1), tmp_path) as (run_, seen):
            runner = run_.runners["shelly"]
            await eventually(lambda: runner.status.level == "ok", 3)
            device.faults.garbage()
            await eventually(lambda: runner.status.level == "error", 3)
            assert "not JSON" in runner.status.text
            assert seen.latest("power") is None

    run(scenario())


def test_http_poll_picks_values_by_json_pointer(tmp_path: Path) -> None:
    async def scenario() -> None:
        m = model()
        async with Shelly3EMGen1(m, password=PASSWORD) as device:
            flow = f"""
                id: poll
                nodes:
                  - id: meter
                    type: http.poll
                    url: {device.url}/status
                    auth: basic
                    password: !secret shelly
                    interval_ms: 100
                    values: {{total: /total_power, l2: /emeters/1/power, nope: /emeters/7/power}}
            """
            async with running(flow, tmp_path) as (run_, seen):
                await eventually(lambda: seen.latest("l2") != "never seen", 3)
                assert seen.latest("l2") == pytest.approx(m.snapshot.grid_l[1], abs=0.1)
                assert seen.latest("total") == pytest.approx(sum(m.snapshot.grid_l), abs=0.3)
                assert seen.latest("nope") is None
                assert "not in the reply: nope" in run_.runners["meter"].status.text

    run(scenario())


def test_a_plus_1pm_is_a_switch_and_gives_its_state(tmp_path: Path) -> None:
    async def scenario() -> None:
        m = model()
        load = m.add_load("heater", 2000.0, on=True)
        async with ShellyPlus1PM(m, load=load) as device, \
                running(meter_flow(device.url, phases=1, switch_state="true"),
                        tmp_path) as (_, seen):
            await eventually(lambda: seen.latest("on") is True, 3)
            assert seen.latest("power") == pytest.approx(2000.0, rel=0.01)

    run(scenario())


def test_detect_model_from_shelly_answers() -> None:
    assert detect_model({"type": "SHEM-3", "num_emeters": 3}) == "gen1-3em"
    assert detect_model({"type": "SHSW-PM", "num_meters": 1}) == "gen1-meter"
    assert detect_model({"gen": 2, "app": "Pro3EM"}) == "pro3em"
    assert detect_model({"gen": 3, "app": "MiniPMG3"}) == "pm1"
    assert detect_model({"gen": 2, "app": "Plus1PM"}) == "switch"


def test_a_single_phase_device_configured_as_three_phase_says_what_to_set(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        async with ShellyPMMiniGen3(model()) as device, \
                running(meter_flow(device.url, offline_after=1), tmp_path) as (run_, _):
            runner = run_.runners["shelly"]
            await eventually(lambda: runner.status.level == "error", 3)
            assert "set phases: 1" in runner.status.text

    run(scenario())


def test_a_too_deep_reply_is_a_failed_poll_not_a_failed_node(tmp_path: Path) -> None:
    """`{"emeters":` + 50000 `[` made Python's parser raise RecursionError, which failed
    the node; its restart backoff then kept the meter missing long after the device was
    healthy again."""
    interval = 0.2

    async def scenario() -> None:
        async with Shelly3EMGen1(model(), password=PASSWORD) as device, \
                running(meter_flow(device.url, interval_ms=int(interval * 1000)),
                        tmp_path) as (run_, seen):
            runner = run_.runners["shelly"]
            await eventually(lambda: runner.status.level == "ok", 3)
            failed = runner.node.failed_polls  # type: ignore[union-attr]
            device.faults.deep()
            await eventually(lambda: runner.status.level == "error", 5)
            assert "nested deeper than" in runner.status.text
            assert runner.node.failed_polls >= failed + 3  # type: ignore[union-attr]
            assert seen.latest("L1/power") is None and seen.latest("connected") == 0
            device.faults.clear()
            cleared = asyncio.get_running_loop().time()
            await eventually(lambda: isinstance(seen.latest("L1/power"), float), 3)
            # the next poll after the fault, one interval (and one answer) later
            assert asyncio.get_running_loop().time() - cleared < interval + 0.5
            assert runner.restarts == 0 and runner.failures == 0
            assert runner.status.level == "ok"

    run(scenario())


BROKEN_REPLIES = {
    "deep": b'{"emeters":' + b"[" * 50_000,
    "just-too-deep": b"[" * 900 + b"]" * 900,
    "invalid-utf8": b'{"total_power": "\xff\xfe"}',
    "nan": b'{"total_power": NaN}',
    "infinity": b'{"total_power": -Infinity}',
    "float-overflow": b'{"total_power": 1e400}',
    "huge-int": b'{"total_power": ' + b"9" * 5000 + b"}",
    "lone-surrogate": b'{"total_power": "\\ud800"}',
    "truncated": b'{"emeters": [{"power": 1',
    "empty": b"",
}


@pytest.mark.parametrize("body", BROKEN_REPLIES.values(), ids=BROKEN_REPLIES.keys())
def test_a_broken_reply_is_device_unreachable(body: bytes) -> None:
    async def scenario() -> None:
        async with Shelly3EMGen1(model()) as device, \
                open_session("default", HttpSessionConfig()) as session:
            client = session.client()
            assert isinstance(await client.get_json(device.url + "/status", timeout_s=2), dict)
            device.faults.answer(body)
            with pytest.raises(DeviceUnreachable, match="reply is not JSON"):
                await client.get_json(device.url + "/status", timeout_s=2)

    run(scenario())


def test_numbers_near_a_doubles_limit_and_a_sum_beyond_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Shelly3EMGen1(model()) as device, \
                running(meter_flow(device.url, offline_after=1), tmp_path) as (run_, seen):
            runner = run_.runners["shelly"]
            await eventually(lambda: runner.status.level == "ok", 3)
            huge = 18446744073709551615  # in range for the decoder; times 0.001 it is fine
            device.faults.answer(json.dumps({"emeters": [
                {"power": 1.7e308, "total": huge, "total_returned": 1e308}] * 3}).encode())
            await eventually(lambda: seen.latest("L1/power") == 1.7e308, 3)
            assert seen.latest("power") is None  # the phases' sum is no double: unknown
            assert seen.latest("L1/energy_forward") == pytest.approx(huge / 1000)
            assert runner.status.level == "ok" and runner.restarts == 0

    run(scenario())


def test_a_reply_may_nest_max_depth_levels_not_more() -> None:
    deepest = b"[" * MAX_DEPTH + b"1" + b"]" * MAX_DEPTH
    assert decode_json(deepest) is not None
    with pytest.raises(DeviceUnreachable, match=f"nested deeper than {MAX_DEPTH}"):
        decode_json(b"[" + deepest + b"]")
    with pytest.raises(DeviceUnreachable, match=f"nested deeper than {MAX_DEPTH}"):
        decode_json(b'{"a": [' + deepest + b"]}")
