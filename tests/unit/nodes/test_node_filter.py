"""filter: deadbands, change-only, pacing per topic, ranges, and invalid values."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from flowengine.errors import ConfigErrors
from flowengine.loader import Secrets, load_flow
from flowengine.model import JsonValue
from flowengine.plan import plan_flow
from flowengine.registry import Registry
from flowengine.testing import NodeHarness

REG = Registry()
REG.add_modules(["nodes.logic.filter"])


def harness(tmp_path: Path, options: str) -> NodeHarness:
    node = "id: quiet\ntype: filter\n" + textwrap.dedent(options).strip()
    return NodeHarness(node, registry=REG, tmp_dir=tmp_path)


def passed(tmp_path: Path, options: str, values: list[JsonValue]) -> tuple[list[JsonValue],
                                                                          list[JsonValue]]:
    """(passed, rejected) for values sent one after the other on one topic."""
    async def scenario() -> tuple[list[JsonValue], list[JsonValue]]:
        async with harness(tmp_path, options) as h:
            for value in values:
                await h.send("power", value)
            return h.values("out"), h.values("rejected")
    return asyncio.run(scenario())


def test_filter_without_options_passes_everything(tmp_path: Path) -> None:
    assert passed(tmp_path, "only_on_change: false", [1, 1, 2]) == ([1, 1, 2], [])


def test_filter_deadband_passes_changes_of_at_least_the_band(tmp_path: Path) -> None:
    assert passed(tmp_path, "deadband: 50", [1000, 1049, 1050, 1010, 999]) == \
        ([1000, 1050, 999], [1049, 1010])


def test_filter_deadband_percent_is_relative_to_the_last_value_passed(tmp_path: Path) -> None:
    assert passed(tmp_path, "deadband_percent: 10", [1000, 1090, 1100, 1200]) == \
        ([1000, 1100], [1090, 1200])


def test_filter_with_both_bands_needs_both(tmp_path: Path) -> None:
    assert passed(tmp_path, "deadband: 50\ndeadband_percent: 10", [100, 140, 160, 3000, 3200]) \
        == ([100, 160, 3000], [140, 3200])


def test_filter_only_on_change_works_for_texts(tmp_path: Path) -> None:
    assert passed(tmp_path, "only_on_change: true", ["on", "on", "off", "off"]) == \
        (["on", "off"], ["on", "off"])


def test_filter_passes_invalid_once_and_never_filters_it_away(tmp_path: Path) -> None:
    assert passed(tmp_path, "deadband: 50", [1000, None, None, 1010, 1020]) == \
        ([1000, None, 1010], [None, 1020])


def test_filter_range_drop_sends_to_rejected(tmp_path: Path) -> None:
    assert passed(tmp_path, "minimum: 0\nmaximum: 100", [50, 101, -1, 100]) == \
        ([50, 100], [101, -1])


def test_filter_range_invalid_passes_none(tmp_path: Path) -> None:
    assert passed(tmp_path, "maximum: 100\nout_of_range: invalid", [50, 101, 150, 60]) == \
        ([50, None, 60], [None])


def test_filter_range_clamp_passes_the_limit(tmp_path: Path) -> None:
    assert passed(tmp_path, "minimum: 0\nmaximum: 100\nout_of_range: clamp", [150, -3]) == \
        ([100, 0], [])


def test_filter_min_interval_holds_back_and_sends_the_latest(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "min_interval_ms: 1000") as h:
            await h.send("power", 1)
            await h.advance(200)
            await h.send("power", 2)
            await h.send("power", 3)
            assert h.values("out") == [1]
            assert h.values("rejected") == [2]
            await h.advance(799)
            assert h.values("out") == [1]
            await h.advance(1)
            assert h.values("out") == [1, 3]
            await h.advance(5000)
            assert h.values("out") == [1, 3]
    asyncio.run(scenario())


def test_filter_min_interval_is_per_topic(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "min_interval_ms: 1000") as h:
            await h.send("power", 1)
            await h.send("soc", 50)
            assert h.values("out") == [1, 50]
    asyncio.run(scenario())


def test_filter_invalid_is_not_held_back_by_min_interval(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "min_interval_ms: 1000") as h:
            await h.send("power", 1)
            await h.send("power", 2)
            await h.send("power", None)
            assert h.values("out") == [1, None]
            assert h.values("rejected") == [2]
            await h.advance(2000)
            assert h.values("out") == [1, None]
    asyncio.run(scenario())


def test_filter_refuses_minimum_above_maximum(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text("id: f\nnodes:\n  - id: quiet\n    type: filter\n    minimum: 10\n"
                    "    maximum: 5\n", encoding="utf-8")
    with pytest.raises(ConfigErrors) as info:
        plan_flow(load_flow(path, secrets=Secrets(None, {})), REG)
    assert "flow.yaml:5:5: flow 'f', node 'quiet' (filter): minimum 10 is above maximum 5" \
        in str(info.value)
