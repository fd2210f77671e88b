"""change: topics, map, invert, scale and offset, rounding, and invalid values."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from flowengine.model import JsonValue
from flowengine.registry import Registry
from flowengine.testing import NodeHarness

REG = Registry()
REG.add_modules(["nodes.logic.change"])


def harness(tmp_path: Path, options: str) -> NodeHarness:
    node = "id: adapt\ntype: change\n" + textwrap.dedent(options).strip()
    return NodeHarness(node, registry=REG, tmp_dir=tmp_path)


def changed(tmp_path: Path, options: str, *values: JsonValue,
            topic: str = "power") -> list[tuple[str, JsonValue]]:
    async def scenario() -> list[tuple[str, JsonValue]]:
        async with harness(tmp_path, options) as h:
            for value in values:
                await h.send(topic, value)
            return [(m.topic, m.value) for m in h.messages()]
    return asyncio.run(scenario())


def test_change_renames_the_topic(tmp_path: Path) -> None:
    assert changed(tmp_path, "topic: grid", 5) == [("grid", 5)]


def test_change_topic_template_uses_the_old_topic(tmp_path: Path) -> None:
    assert changed(tmp_path, "topic: 'l1_{topic}'", 5) == [("l1_power", 5)]


def test_change_scales_offsets_and_rounds(tmp_path: Path) -> None:
    assert changed(tmp_path, "scale: 0.001\noffset: 1\ndecimals: 2", 1234) == \
        [("power", 2.23)]


def test_change_decimals_zero_gives_whole_numbers(tmp_path: Path) -> None:
    result = changed(tmp_path, "decimals: 0", 12.6)
    assert result == [("power", 13)]
    assert type(result[0][1]) is int


def test_change_keeps_invalid_invalid_never_zero(tmp_path: Path) -> None:
    assert changed(tmp_path, "topic: grid\nscale: 2\noffset: 5\ninvert: true", None) == \
        [("grid", None)]


@pytest.mark.parametrize(("value", "inverted"), [(True, False), (False, True), (1, 0), (0, 1)])
def test_change_inverts_booleans_and_zero_one(tmp_path: Path, value: JsonValue,
                                              inverted: JsonValue) -> None:
    assert changed(tmp_path, "invert: true", value) == [("power", inverted)]


def test_change_maps_values_written_as_text(tmp_path: Path) -> None:
    options = "map: {'0': 'off', '1': 'on', 'true': 'yes'}"
    assert changed(tmp_path, options, 0, 1.0, True) == \
        [("power", "off"), ("power", "on"), ("power", "yes")]


@pytest.mark.parametrize(("policy", "expected"), [
    ("keep", [("power", 7)]), ("invalid", [("power", None)]), ("drop", []),
])
def test_change_unmapped_policy(tmp_path: Path, policy: str,
                                expected: list[tuple[str, JsonValue]]) -> None:
    assert changed(tmp_path, f"map: {{'0': 'off'}}\nunmapped: {policy}", 7) == expected


@pytest.mark.parametrize("good", [3, 3.0])  # a float also takes the short way once ok
def test_change_text_with_scale_gives_invalid_and_warns_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, good: float) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "scale: 2") as h:
            await h.send("power", "high")
            await h.send("power", "low")
            assert h.values() == [None, None]
            assert h.node_status.level == "warning"
            assert h.node_status.text == "cannot scale 'low'"
            await h.send("power", good)
            assert h.values()[-1] == 6
            assert h.node_status.level == "ok"
            await h.send("power", 2.5)
            await h.send("power", "again")
            assert h.values()[-2:] == [5.0, None]
            assert h.node_status.level == "warning"
    asyncio.run(scenario())
    assert len([r for r in caplog.records if "cannot scale" in r.getMessage()]) == 2  # one a spell



def test_change_keeps_the_message_meta(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "topic: grid") as h:
            await h.send("power", 3, meta={"unit": "W"})
            assert h.messages()[0].meta == {"unit": "W"}
    asyncio.run(scenario())


def test_decimals_far_out_of_range_are_refused_before_anything_runs(tmp_path: Path) -> None:
    from flowengine.errors import ConfigErrors

    with pytest.raises(ConfigErrors, match="decimals"):
        changed(tmp_path, "decimals: -100000000", 5)


def test_an_integer_too_large_to_scale_becomes_invalid_and_the_node_goes_on(
        tmp_path: Path) -> None:
    assert changed(tmp_path, "scale: 0.5", 10**400, 8) == [("power", None), ("power", 4.0)]


def test_rounding_a_large_integer_at_the_decimal_limits_is_quick(tmp_path: Path) -> None:
    assert changed(tmp_path, "decimals: -30", 10**300 + 7) == [("power", 10**300)]
