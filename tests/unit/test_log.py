"""Logging set-up: levels, APP_DEBUG scoping, daily rotation, no duplicate handlers."""

from __future__ import annotations

import io
import logging
import logging.handlers
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowengine.log import (
    PROJECT_LOGGERS,
    TRACE,
    NodeLogger,
    configure_logging,
    parse_level,
    trace,
)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put the root logger and the project loggers back as they were."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    levels = {name: logging.getLogger(name).level for name in ("", *PROJECT_LOGGERS)}
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


class RecordingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_app_debug_shows_project_debug_but_hides_third_party_debug() -> None:
    out = io.StringIO()
    configure_logging("APP_DEBUG", stream=out)

    logging.getLogger("flowengine.x").debug("ours %d", 1)
    logging.getLogger("somelib").debug("theirs")
    logging.getLogger("somelib").info("their news")

    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} DEBUG flowengine\.x: ours 1",
                        lines[0])
    assert lines[1].endswith(" INFO somelib: their news")


def test_debug_shows_third_party_debug() -> None:
    out = io.StringIO()
    configure_logging("debug", stream=out)

    logging.getLogger("somelib").debug("theirs")

    assert out.getvalue().endswith(" DEBUG somelib: theirs\n")


def test_info_hides_project_debug() -> None:
    out = io.StringIO()
    configure_logging("APP_DEBUG", stream=out)
    configure_logging("INFO", stream=out)

    logging.getLogger("nodes.logic").debug("hidden")
    logging.getLogger("nodes.logic").info("shown")

    assert out.getvalue().endswith(" INFO nodes.logic: shown\n")
    assert "hidden" not in out.getvalue()


def test_trace_level_shows_trace_records() -> None:
    out = io.StringIO()
    configure_logging("TRACE", stream=out)

    trace(logging.getLogger("flowengine.runtime"), "message %s", "m1")

    assert out.getvalue().endswith(" TRACE flowengine.runtime: message m1\n")


def test_trace_is_hidden_at_debug() -> None:
    out = io.StringIO()
    configure_logging("DEBUG", stream=out)

    trace(logging.getLogger("flowengine.runtime"), "message")
    NodeLogger(logging.getLogger("flowengine.node"), "f", "n").trace("message")

    assert out.getvalue() == ""


def test_file_handler_rotates_at_utc_midnight_keeping_14_days(tmp_path: Path) -> None:
    file = tmp_path / "log" / "esess.log"
    configure_logging("INFO", file=file, stream=io.StringIO())

    logging.getLogger("flowengine.x").info("to the file")

    [handler] = [h for h in logging.getLogger().handlers
                 if isinstance(h, logging.handlers.TimedRotatingFileHandler)]
    assert handler.when == "MIDNIGHT"
    assert handler.utc is True
    assert handler.backupCount == 14
    handler.flush()
    assert file.read_text(encoding="utf-8").endswith(" INFO flowengine.x: to the file\n")


def test_reconfiguring_replaces_its_handlers_and_keeps_others() -> None:
    out = io.StringIO()
    other = io.StringIO()
    foreign = logging.StreamHandler(other)
    logging.getLogger().addHandler(foreign)
    configure_logging("INFO", stream=out)
    configure_logging("INFO", stream=out)

    logging.getLogger("flowengine.x").info("once")

    assert out.getvalue().count("once") == 1
    assert other.getvalue() == "once\n"


def test_node_logger_prefixes_flow_and_node() -> None:
    out = io.StringIO()
    configure_logging("TRACE", stream=out)
    log = NodeLogger(logging.getLogger("flowengine.node"), "time-to-go", "seconds")

    log.warning("offline after %d failed polls", 3)
    log.trace("message %s", "m1")

    lines = out.getvalue().splitlines()
    assert lines[0].endswith(
        " WARNING flowengine.node: time-to-go/seconds: offline after 3 failed polls")
    assert lines[1].endswith(" TRACE flowengine.node: time-to-go/seconds: message m1")


def test_trace_records_name_the_calling_function() -> None:
    handler = RecordingHandler()
    logger = logging.getLogger("flowengine.node")
    logger.addHandler(handler)
    configure_logging("TRACE", stream=io.StringIO())
    try:
        NodeLogger(logger, "f", "n").trace("one")
        trace(logger, "two")
    finally:
        logger.removeHandler(handler)

    records = handler.records
    assert [r.funcName for r in records] == ["test_trace_records_name_the_calling_function"] * 2
    assert records[0].levelno == TRACE


def test_parse_level_accepts_any_case() -> None:
    assert parse_level("app_debug") == 15
    assert parse_level("Trace") == 5
    assert parse_level("WARNING") == logging.WARNING


def test_parse_level_error_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown log level 'verbose'") as info:
        parse_level("verbose")

    assert "TRACE, DEBUG, APP_DEBUG, INFO, WARNING, ERROR, CRITICAL" in str(info.value)


def test_trace_logs_each_message_with_flow_node_port_topic_and_value() -> None:
    from conftest import run

    from flowengine.testing import FlowHarness

    out = io.StringIO()
    configure_logging("TRACE", stream=out)

    async def scenario() -> None:
        async with FlowHarness("""
            id: watch
            nodes:
              - {id: tick, type: timer, interval_ms: 1000, topic: now, to: [pv]}
              - {id: pv, type: formula, expression: "now * 2", output: pv_w}
        """) as h:
            await h.advance(1000)
            assert len(h.messages()) == 2  # the harness's tap still sees them too

    run(scenario())
    lines = [line.split(" ", 2)[2] for line in out.getvalue().splitlines()
             if " TRACE flowengine.trace: " in line]
    assert len(lines) == 2
    assert lines[0].startswith("TRACE flowengine.trace: watch/tick:out now = ")
    assert lines[1].startswith("TRACE flowengine.trace: watch/pv:out pv_w = ")


def test_trace_is_bounded_and_counts_what_it_skipped() -> None:
    from flowengine.log import TRACE_BURST, TRACE_PER_S, MessageTrace

    now = [0.0]
    logger = logging.getLogger("flowengine.trace.test")
    logger.setLevel(TRACE)
    handler = RecordingHandler()
    logger.addHandler(handler)
    try:
        trace = MessageTrace(logger, clock=lambda: now[0])
        for i in range(10_000):  # a flood in no time: only the burst goes out
            trace("f", "n", "out", "t", i)
        assert len(handler.records) == TRACE_BURST
        now[0] += 1.0  # a second later: the rate, and first the count of the skipped
        for i in range(10_000):
            trace("f", "n", "out", "t", i)
        texts = [r.getMessage() for r in handler.records[TRACE_BURST:]]
        assert texts[0] == f"{10_000 - TRACE_BURST} messages not traced (more than " \
            f"{TRACE_PER_S:g} a second)"
        assert texts[1] == "f/n:out t = 0"
        assert len(texts) == 1 + int(TRACE_PER_S)
        trace("f", "n", "out", "big", "x" * 10_000)
        assert trace.skipped == 10_000 - int(TRACE_PER_S) + 1
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
