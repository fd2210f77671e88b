"""log: lines, levels, formats, rate limits, and format errors."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from pathlib import Path

import pytest

from flowengine.errors import ConfigErrors
from flowengine.loader import Secrets, load_flow
from flowengine.log import TRACE
from flowengine.plan import plan_flow
from flowengine.registry import Registry
from flowengine.testing import NodeHarness

REG = Registry()
REG.add_modules(["nodes.logic.log"])


def harness(tmp_path: Path, options: str) -> NodeHarness:
    node = "id: show\ntype: log\n" + textwrap.dedent(options).strip()
    return NodeHarness(node, registry=REG, tmp_dir=tmp_path)


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records
            if r.getMessage().startswith("harness/show: ")]


def test_log_writes_each_message(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "level: INFO") as h:
            await h.send("soc", 50)
            await h.send("soc", None)
            assert h.messages() == []
    caplog.set_level(logging.INFO)
    asyncio.run(scenario())
    assert lines(caplog) == [(logging.INFO, "harness/show: soc = 50"),
                             (logging.INFO, "harness/show: soc = None")]


def test_log_uses_the_format_fields(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "level: WARNING\nformat: '{node}: {topic} is {value:.1f}'"
                           ) as h:
            await h.send("power", 1234.56)
    asyncio.run(scenario())
    assert lines(caplog) == [(logging.WARNING, "harness/show: show: power is 1234.6")]


def test_log_writes_nothing_below_the_enabled_level(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "level: TRACE") as h:
            await h.send("soc", 50)
    caplog.set_level(logging.DEBUG)
    asyncio.run(scenario())
    assert lines(caplog) == []
    caplog.set_level(TRACE)
    asyncio.run(scenario())
    assert lines(caplog) == [(TRACE, "harness/show: soc = 50")]


def test_log_min_interval_limits_lines_per_topic(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "min_interval_ms: 1000") as h:
            await h.send("soc", 1)
            await h.send("soc", 2)
            await h.send("power", 5)
            await h.send("soc", 3)
            await h.advance(1000)
            await h.send("soc", 4)
    caplog.set_level(logging.INFO)
    asyncio.run(scenario())
    assert [text for _, text in lines(caplog)] == [
        "harness/show: soc = 1", "harness/show: power = 5",
        "harness/show: soc = 4 (2 more skipped)"]


def test_log_shows_invalid_despite_a_number_format(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "format: '{topic}: {value:.1f}'") as h:
            await h.send("soc", None)
            assert h.node_status.level == "idle"
    caplog.set_level(logging.INFO)
    asyncio.run(scenario())
    assert lines(caplog) == [(logging.INFO, "harness/show: soc = None")]


def test_log_warns_when_the_format_does_not_fit_a_value(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, "format: '{value:.1f}'") as h:
            await h.send("mode", "on")
            assert h.node_status.level == "warning"
            assert h.node_status.text.startswith("format: ")
    caplog.set_level(logging.INFO)
    asyncio.run(scenario())
    assert lines(caplog) == [(logging.INFO, "harness/show: mode = 'on'")]


@pytest.mark.parametrize(("fmt", "wording"), [
    ("'{value.__class__}'", "unknown field '{value.__class__}' in format"),
    ("'{unit}'", "unknown field '{unit}' in format"),
    ("'{value:{topic}}'", "nested fields are not allowed in format ('{value:{topic}}')"),
    ("'{topic'", "expected '}' before end of string"),
])
def test_log_refuses_a_bad_format(tmp_path: Path, fmt: str, wording: str) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(f"id: f\nnodes:\n  - id: show\n    type: log\n    format: {fmt}\n",
                    encoding="utf-8")
    with pytest.raises(ConfigErrors) as info:
        plan_flow(load_flow(path, secrets=Secrets(None, {})), REG)
    assert f"flow.yaml:5:5: flow 'f', node 'show' (log): {wording}; fields: " in str(info.value)
