"""`/watch` in process: bounded per watcher, told what it lost, untapped when it goes,
and following a flow through a restart. The admin API on a real socket, no bus."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from conftest import eventually, run

from flowengine.admin.access import AdminAddress
from flowengine.admin.deploy import Deployer
from flowengine.admin.server import MAX_BODY, MAX_WATCHERS, WATCH_QUEUE, AdminServer
from flowengine.loader import load_flow
from flowengine.model import Message
from flowengine.plan import FlowPlan, plan_flow
from flowengine.registry import Registry
from flowengine.runtime import Runtime

TICK = """\
id: tick
nodes:
  - {id: t, type: timer, interval_ms: 600000, to: [show]}
  - {id: show, type: log, level: DEBUG}
"""


def _plan(tmp_path: Path, registry: Registry) -> FlowPlan:
    file = tmp_path / "tick.yaml"
    file.write_text(TICK)
    return plan_flow(load_flow(file), registry)


@asynccontextmanager
async def admin(tmp_path: Path) -> AsyncIterator[tuple[Runtime, aiohttp.ClientSession]]:
    registry = Registry.default()
    async with Runtime(registry) as runtime:
        plan = _plan(tmp_path, registry)
        await runtime.start_flow(plan)
        address = AdminAddress(tmp_path / "state")
        deployer = Deployer(runtime, [plan], site=None, load=_no_load, variables={})
        async with AdminServer(deployer, address) as server:
            token = address.token_path.read_text().strip()
            async with aiohttp.ClientSession(
                    connector=aiohttp.UnixConnector(path=str(address.socket_path)),
                    headers={"Authorization": f"Bearer {token}"}) as session:
                yield runtime, session
            await server.close()


def _no_load(files: Any, values: Any) -> Any:
    raise AssertionError("no deploy here")


def emit(runtime: Runtime, *values: int) -> None:
    runner = runtime.flows["tick"].runners["t"]
    for value in values:
        runner.route("out", Message("n", value))


async def lines(response: aiohttp.ClientResponse, count: int) -> list[dict[str, Any]]:
    return [json.loads(await response.content.readline()) for _ in range(count)]


def test_a_slow_watcher_loses_the_oldest_messages_and_is_told(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with admin(tmp_path) as (runtime, session), \
                session.get("http://admin/watch?flow=tick&node=t") as response:
            assert await lines(response, 1) == [{"watching": "tick", "node": "t",
                                                 "queue": WATCH_QUEUE}]
            emit(runtime, *range(WATCH_QUEUE + 300))  # faster than anybody reads
            got = await lines(response, 1 + WATCH_QUEUE)
            assert got[0] == {"dropped": 300, "dropped_total": 300}
            assert [g["value"] for g in got[1:]] == list(range(300, 300 + WATCH_QUEUE))
            assert {(g["flow"], g["node"], g["port"], g["topic"]) for g in got[1:]} == \
                {("tick", "t", "out", "n")}

    run(scenario())


def test_the_tap_goes_when_the_watcher_goes(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with admin(tmp_path) as (runtime, session):
            async with session.get("http://admin/watch?flow=tick") as response:
                await lines(response, 1)
                assert runtime.flows["tick"].tap is not None
            await eventually(lambda: runtime.flows["tick"].tap is None, timeout=3)

    run(scenario())


def test_a_watch_follows_its_flow_through_a_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with admin(tmp_path) as (runtime, session), \
                session.get("http://admin/watch?flow=tick&node=t") as response:
            await lines(response, 1)
            await runtime.replace_flow(runtime.flows["tick"].plan.fresh())
            emit(runtime, 7)
            assert [g["value"] for g in await lines(response, 1)] == [7]

    run(scenario())


def test_watchers_and_bodies_are_bounded(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with admin(tmp_path) as (_, session):
            open_ = [await session.get("http://admin/watch?flow=tick")
                     for _ in range(MAX_WATCHERS)]
            try:
                async with session.get("http://admin/watch?flow=tick") as refused:
                    assert refused.status == 429
                    assert await refused.json() == {
                        "error": f"{MAX_WATCHERS} watchers already; end one first"}
            finally:
                for response in open_:
                    response.close()
            async with session.post("http://admin/deploy", data=io.BytesIO(b"x" * (MAX_BODY + 1)),
                                    headers={"Content-Type": "application/json"}) as big:
                assert big.status == 413
                assert "error" in await big.json()
            async with session.get("http://admin/watch?flow=tick&node=nope") as unknown:
                assert unknown.status == 404
                assert await unknown.json() == {
                    "error": "flow 'tick' has no node 'nope' (nodes: t, show)"}

    run(scenario())
