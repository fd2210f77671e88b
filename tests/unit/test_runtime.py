"""Runtime behaviour: routing, coalescing, supervision, fail-safe, redeploy, children, state."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from conftest import run, test_registry

from flowengine.errors import FlowStartError
from flowengine.loader import load_flow
from flowengine.mailbox import Mailbox
from flowengine.model import Message
from flowengine.plan import plan_flow
from flowengine.runtime import Runtime
from flowengine.state import StateStore
from flowengine.testing import FlowHarness


def chain(device: Path, *, crash_on: object = "boom", fail_on: object = None) -> str:
    return f"""
        id: chain
        nodes:
          - {{id: src, type: test.source, every_ms: 100, to: [mid]}}
          - {{id: mid, type: test.crash, crash_on: {crash_on!r}, to: [act, copy]}}
          - {{id: copy, type: test.crash}}
          - {{id: act, type: test.actuator, device: "{device}", safe_value: -1,
              fail_on: {fail_on!r}}}
    """


def values(h: FlowHarness, node: str) -> list[object]:
    return [m.value for m in h.messages(node)]


def test_messages_follow_the_wires_to_every_target(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with FlowHarness(chain(tmp_path / "dev"), registry=test_registry()) as h:
            await h.advance(300)
            assert values(h, "src") == [1, 2, 3]
            assert values(h, "mid") == [1, 2, 3]
            assert values(h, "copy") == [1, 2, 3]
            assert (tmp_path / "dev").read_text() == "3\n"

    run(scenario())


def test_telemetry_mailbox_keeps_only_the_latest_value_per_topic() -> None:
    box = Mailbox({"in": "telemetry"})
    for i in range(1000):
        box.put("in", Message("soc", i))
        box.put("in", Message("power", -i))
    assert len(box) == 2
    assert [m.value for _, m in (box.get_nowait(), box.get_nowait())] == [999, -999]
    assert box.dropped == 0


def test_event_mailbox_is_bounded_and_counts_what_it_dropped() -> None:
    box = Mailbox({"in": "event"}, capacity=10)
    for i in range(25):
        box.put("in", Message("cmd", i))
    assert len(box) == 10
    assert box.dropped == 15
    assert box.get_nowait()[1].value == 15  # the oldest were dropped


def test_slow_node_does_not_grow_memory(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with FlowHarness(chain(tmp_path / "dev"), registry=test_registry()) as h:
            mid = h.runner("mid")
            await mid.halt_inputs()  # nothing drains its box any more
            src = h.runner("src")
            for i in range(10_000):
                src.route("out", Message("count", i))
            assert len(mid.mailbox) == 1
            assert mid.mailbox.get_nowait()[1].value == 9999

    run(scenario())


def test_failing_node_is_reported_restarted_and_others_keep_running(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with FlowHarness(chain(tmp_path / "dev", crash_on=2),
                               registry=test_registry()) as h:
            await h.advance(200)
            status = h.status("mid")
            assert (status.level, status.text) == ("error", "failed: crash requested")
            assert "chain/mid (test.crash) failed in chain/mid:inputs: crash requested" \
                in caplog.text
            await h.advance(500)  # still in backoff (1 s): the source goes on
            assert values(h, "src")[-1] == 7
            assert values(h, "mid") == [1]
            await h.advance(600)  # restarted after 1 s
            assert h.runner("mid").restarts == 1
            assert h.status("mid").level == "ok"
            assert values(h, "mid")[-1] == 13

    with caplog.at_level(logging.INFO):
        run(scenario())


def test_a_failed_node_cannot_hide_why_it_failed_until_it_runs_again(tmp_path: Path) -> None:
    """A callback of the failed incarnation (a shared connection telling it something)
    sets no status: the failure stays visible until the restart."""
    async def scenario() -> None:
        async with FlowHarness(chain(tmp_path / "dev", crash_on=2),
                               registry=test_registry()) as h:
            old = h.runner("mid").node
            await h.advance(200)
            assert h.status("mid").text == "failed: crash requested"
            old.ctx.status.ok("all fine")  # late, from the failed incarnation
            assert h.status("mid").text == "failed: crash requested"
            await h.advance(1100)  # restarted: the new incarnation's statuses count
            assert h.status("mid").level == "ok"
    run(scenario())


def test_restart_backoff_doubles_while_the_node_keeps_failing(tmp_path: Path) -> None:
    async def scenario() -> None:
        flow = """
            id: crashy
            nodes:
              - {id: src, type: test.source, every_ms: 10, to: [mid]}
              - {id: mid, type: test.crash, crash_always: true}
        """
        async with FlowHarness(flow, registry=test_registry()) as h:
            mid = h.runner("mid")
            await h.advance(10)
            assert mid.failures == 1
            await h.advance(1000)  # restart after 1 s, fails again at once
            assert (mid.restarts, mid.failures) == (1, 2)
            await h.advance(1000)  # next try after 2 s, not 1 s
            assert mid.restarts == 1
            await h.advance(1000)
            assert mid.restarts == 2

    run(scenario())


def test_safe_state_is_applied_when_the_driving_node_fails(tmp_path: Path) -> None:
    async def scenario() -> None:
        device = tmp_path / "dev"
        async with FlowHarness(chain(device, fail_on=3), registry=test_registry()) as h:
            await h.advance(200)
            assert device.read_text() == "2\n"
            await h.advance(100)
            assert device.read_text() == "-1\n"
            assert h.status("act").level == "error"

    run(scenario())


def test_safe_state_is_applied_on_stop(tmp_path: Path) -> None:
    async def scenario() -> None:
        device = tmp_path / "dev"
        async with FlowHarness(chain(device), registry=test_registry()) as h:
            await h.advance(300)
            assert device.read_text() == "3\n"
        assert device.read_text() == "-1\n"

    run(scenario())


def _plan(write, text: str):  # type: ignore[no-untyped-def]
    return plan_flow(load_flow(write("flow.yaml", text)), test_registry())


def test_flow_that_fails_to_start_is_rolled_back(write, tmp_path: Path) -> None:
    device = tmp_path / "dev"

    async def scenario() -> None:
        plan = _plan(write, f"""
            id: broken
            nodes:
              - {{id: src, type: test.crash, fail_start: true, to: [act]}}
              - {{id: act, type: test.actuator, device: "{device}", safe_value: safe}}
        """)
        runtime = Runtime(test_registry())
        with pytest.raises(FlowStartError, match=r"node 'src' .* did not start: start refused"):
            await runtime.start_flow(plan)
        assert runtime.flows == {}
        assert device.read_text() == "safe\n"  # the actuator had started: back to safe
        await runtime.stop()

    run(scenario())


def test_redeploy_replaces_one_flow_and_leaves_the_others(write, tmp_path: Path) -> None:
    async def scenario() -> None:
        one = _plan(write, "id: one\nnodes:\n  - {id: src, type: test.source, every_ms: 10}\n")
        two = _plan(write, "id: two\nnodes:\n  - {id: src, type: test.source, every_ms: 10}\n")
        runtime = Runtime(test_registry())
        await runtime.start_flow(one)
        await runtime.start_flow(two)
        kept = runtime.flows["two"]
        new_one = _plan(write, "id: one\nnodes:\n  - {id: src, type: test.source, "
                               "every_ms: 10, topic: v2}\n")
        await runtime.replace_flow(new_one)
        assert runtime.flows["two"] is kept
        await asyncio.sleep(0.05)
        assert runtime.flows["one"].runners["src"].last_message.topic == "v2"  # type: ignore[union-attr]
        await runtime.stop()

    run(scenario())


def test_redeploy_rolls_back_when_the_new_version_fails(write, tmp_path: Path) -> None:
    async def scenario() -> None:
        good = _plan(write, "id: one\nnodes:\n  - {id: src, type: test.source, every_ms: 10}\n")
        bad = _plan(write, "id: one\nnodes:\n  - {id: src, type: test.crash, fail_start: true}\n")
        runtime = Runtime(test_registry())
        await runtime.start_flow(good)
        with pytest.raises(FlowStartError):
            await runtime.replace_flow(bad)
        run_ = runtime.flows["one"]
        assert run_.runners["src"].cls.type_name == "test.source"
        await asyncio.sleep(0.05)
        assert run_.runners["src"].last_message is not None  # the old version runs again
        await runtime.stop()

    run(scenario())


PARENT = """
    id: fleet
    nodes:
      - {{id: fleet, type: test.parent, device_dir: "{d}"}}
"""


def test_children_are_created_fed_and_stopped_with_their_safe_state(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with FlowHarness(PARENT.format(d=tmp_path), registry=test_registry()) as h:
            await h.send("fleet", "add", "heater")
            await h.send("fleet", "add", "pump")
            assert h.runner("fleet").children.keys() == {"heater", "pump"}
            await h.send("fleet", "heater/power", 2000)
            assert (tmp_path / "heater").read_text() == "2000\n"
            await h.send("fleet", "remove", "heater")
            assert (tmp_path / "heater").read_text() == "off\n"
            assert list(h.runner("fleet").children) == ["pump"]
            await h.send("fleet", "pump/power", 300)
        assert (tmp_path / "pump").read_text() == "off\n"  # stopped with the flow

    run(scenario())


def test_failing_child_gets_safe_state_and_restarts_alone(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with FlowHarness(PARENT.format(d=tmp_path), registry=test_registry()) as h:
            await h.send("fleet", "add", "heater")
            await h.send("fleet", "add-echo", "echo")
            await h.send("fleet", "heater/power", "bad")
            heater = h.runner("fleet/heater")
            assert heater.status.level == "error"
            assert (tmp_path / "heater").read_text() == "off\n"
            await h.send("fleet", "echo/x", 5)  # siblings and parent unaffected
            assert [m.value for m in h.messages("fleet")] == [5]
            await h.advance(1000)
            assert heater.restarts == 1
            await h.send("fleet", "heater/power", 100)
            assert (tmp_path / "heater").read_text() == "100\n"

    run(scenario())


def test_child_config_is_validated_like_a_flow_node(tmp_path: Path) -> None:
    from flowengine.errors import ConfigErrors

    async def scenario() -> None:
        async with FlowHarness(PARENT.format(d=tmp_path), registry=test_registry()) as h:
            parent = h.runner("fleet")
            with pytest.raises(ConfigErrors, match="unknown option 'colour'"):
                await parent.spawn_child("x", "test.crash", {"colour": "red"})
            assert parent.children == {}

    run(scenario())


def test_node_state_survives_a_restart_of_the_runtime(tmp_path: Path) -> None:
    flow = """
        id: counting
        nodes:
          - {id: count, type: test.counter}
    """

    async def scenario() -> None:
        async with FlowHarness(flow, registry=test_registry(), state_dir=tmp_path) as h:
            for _ in range(3):
                await h.send("count", "x", 1)
        async with FlowHarness(flow, registry=test_registry(), state_dir=tmp_path) as h:
            await h.send("count", "x", 1)
            assert [m.value for m in h.messages("count")] == [4]

    run(scenario())
    assert StateStore(tmp_path).node_state("counting", "count").get("total") == 4


def test_shutdown_is_bounded_when_a_node_hangs(write, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    device = tmp_path / "dev"

    async def scenario() -> float:
        plan = _plan(write, f"""
            id: stuck
            nodes:
              - {{id: hang, type: test.stuck}}
              - {{id: act, type: test.actuator, device: "{device}", safe_value: safe}}
        """)
        runtime = Runtime(test_registry())
        await runtime.start_flow(plan)
        started = asyncio.get_running_loop().time()
        await runtime.stop()
        return asyncio.get_running_loop().time() - started

    took = run(scenario())
    assert took < 2.5
    assert device.read_text() == "safe\n"  # the other node's safe state was not held up
    assert "node 'hang': safe state FAILED on stop" in caplog.text


def test_harness_sees_what_a_node_emits_while_starting_and_cleans_up() -> None:
    async def scenario() -> Path:
        harness = FlowHarness("""
            id: early
            nodes:
              - {id: tick, type: timer, interval_ms: 60000, at_start: true, value: 1}
        """)
        async with harness as h:
            assert [m.value for m in h.messages("tick")] == [1]
            assert h.status("tick").since == h.clock.wall()
            assert h._own_tmp is not None
            written = Path(h._own_tmp.name)
            assert (written / "flow.yaml").is_file()
        return written

    assert not run(scenario()).exists()


def test_a_flow_that_did_not_start_is_retried_with_backoff_and_shows_why(
        write, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from flowengine.clock import ManualClock

    device = tmp_path / "dev"

    async def scenario() -> None:
        plan = _plan(write, f"""
            id: broken
            nodes:
              - {{id: src, type: test.crash, fail_start: true, to: [act]}}
              - {{id: act, type: test.actuator, device: "{device}", safe_value: safe}}
        """)
        clock = ManualClock()
        runtime = Runtime(test_registry(), clock=clock)
        with pytest.raises(FlowStartError) as failed:
            await runtime.start_flow(plan)
        runtime.retry_flow(plan, failed.value)
        why = "node 'src' (test.crash) did not start: start refused"
        assert runtime.snapshot()["broken"]["text"] == f"not started (1x): {why}; next try in 1 s"
        for attempts, wait in ((2, 1), (3, 2), (4, 4)):  # 1 s, doubling
            await clock.advance(wait / 2)
            assert runtime.pending["broken"].attempts == attempts - 1  # not yet
            await clock.advance(wait / 2)
            assert runtime.snapshot()["broken"]["text"] == \
                f"not started ({attempts}x): {why}; next try in {wait * 2:.0f} s"
        assert runtime.flows == {} and device.read_text() == "safe\n"
        # the bug's traceback once, not at every attempt
        assert sum(1 for r in caplog.records if r.exc_info) == 1
        await runtime.stop()
        assert runtime.pending == {} and runtime.flows == {}

    run(scenario())
