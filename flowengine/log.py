"""Logging: the TRACE and APP_DEBUG levels, one line format, daily rotated files.

Levels, from most to least verbose::

    TRACE      5   every message through every node (`MessageTrace`, bounded)
    DEBUG     10   everything, third-party libraries included
    APP_DEBUG 15   our DEBUG lines, while third-party libraries stay at INFO
    INFO      20   state changes: started, connected, recovered
    WARNING   30   degraded running
    ERROR     40   someone must act
    CRITICAL  50

`configure_logging` is called once by the CLI (calling it again replaces what it set up).
Engine modules log through ``logging.getLogger(__name__)``; a node logs through its
`NodeLogger`, which puts ``<flow>/<node>: `` before every message.

At TRACE the runtime logs each message a node emits, through the logger
``flowengine.trace``: ``<flow>/<node>:<port> <topic> = <value>``. A GX must not drown in
them, so at most TRACE_PER_S lines a second go out (bursts of TRACE_BURST); what is
skipped is counted and the count is logged before the next traced message. Whether to
trace is decided when a flow starts: with TRACE off, routing a message costs nothing more.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path

TYPE_CHECKING = False  # typing costs the guardian 2 MB resident; mypy still sees these
if TYPE_CHECKING:
    from typing import IO, Any

__all__ = [
    "APP_DEBUG",
    "FORMAT",
    "LEVELS",
    "PROJECT_LOGGERS",
    "SERVICE_FORMAT",
    "TRACE",
    "TRACE_BURST",
    "TRACE_PER_S",
    "MessageTrace",
    "NodeLogger",
    "configure_logging",
    "parse_level",
    "trace",
]

TRACE = 5
APP_DEBUG = 15
logging.addLevelName(TRACE, "TRACE")
logging.addLevelName(APP_DEBUG, "APP_DEBUG")

LEVELS: dict[str, int] = {
    "TRACE": TRACE,
    "DEBUG": logging.DEBUG,
    "APP_DEBUG": APP_DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}

PROJECT_LOGGERS = ("flowengine", "nodes", "esess")
"""The top-level loggers of this project; APP_DEBUG turns on DEBUG for these only."""

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SERVICE_FORMAT = "%(levelname)s %(name)s: %(message)s"
"""Without our timestamp: under daemontools multilog stamps each line (install/service/run
sets ESESS_LOG_TIMESTAMPS=0)."""

TRACE_PER_S = 20.0  # traced messages a second, on average
TRACE_BURST = 50  # traced messages in a row before the rate applies
_TRACE_VALUE_CHARS = 200

_HANDLER_NAME = "esess-flows"  # marks the handlers configure_logging installed
_ROTATE_KEEP_DAYS = 14


def parse_level(name: str) -> int:
    """The number of a level name (any case); ValueError listing the names otherwise."""
    level = LEVELS.get(name.strip().upper())
    if level is None:
        raise ValueError(f"unknown log level {name!r}; use one of {', '.join(LEVELS)}")
    return level


def configure_logging(level: str = "INFO", *, file: str | os.PathLike[str] | None = None,
                      stream: IO[str] | None = None) -> None:
    """Log to `stream` (default stdout) and, if given, to `file`, rotated at UTC midnight.

    With ESESS_LOG_TIMESTAMPS=0 in the environment, the stream's lines carry no time
    (SERVICE_FORMAT); a file's always do.

    Calling it again replaces the handlers an earlier call installed; handlers installed
    by anyone else are left alone.
    """
    number = parse_level(level)
    formatter = _UtcFormatter(FORMAT)
    stamped = os.environ.get("ESESS_LOG_TIMESTAMPS", "1") != "0"
    console = logging.StreamHandler(sys.stdout if stream is None else stream)
    console.setFormatter(formatter if stamped else _UtcFormatter(SERVICE_FORMAT))
    handlers: list[logging.Handler] = [console]
    if file is not None:
        # imported only with a file (the guardian logs to its stream alone)
        from logging.handlers import TimedRotatingFileHandler

        Path(file).parent.mkdir(parents=True, exist_ok=True)
        rotating = TimedRotatingFileHandler(
            file, when="midnight", utc=True, backupCount=_ROTATE_KEEP_DAYS, encoding="utf-8")
        rotating.setFormatter(formatter)
        handlers.append(rotating)

    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.set_name(_HANDLER_NAME)
        root.addHandler(handler)

    root.setLevel(logging.INFO if number == APP_DEBUG else number)
    project_level = logging.DEBUG if number == APP_DEBUG else logging.NOTSET
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(project_level)


class _UtcFormatter(logging.Formatter):
    """Timestamps in UTC with milliseconds (``2025-06-01 12:00:00.123``), as files rotate."""

    default_msec_format = "%s.%03d"

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self.converter = time.gmtime


class NodeLogger(logging.LoggerAdapter[logging.Logger]):
    """The logger of one node: every message starts with ``<flow>/<node>: ``.

    Records also carry `flow_id` and `node_id` attributes, for handlers that want them.
    """

    def __init__(self, logger: logging.Logger, flow_id: str, node_id: str) -> None:
        super().__init__(logger, {"flow_id": flow_id, "node_id": node_id})
        self.flow_id = flow_id
        self.node_id = node_id
        self._prefix = f"{flow_id}/{node_id}: "

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]
                ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return f"{self._prefix}{msg}", kwargs

    def trace(self, msg: object, *args: object, **kwargs: Any) -> None:
        """Log at TRACE, if TRACE is enabled (cheap when it is not)."""
        if self.isEnabledFor(TRACE):
            kwargs.setdefault("stacklevel", 2)
            self.log(TRACE, msg, *args, **kwargs)


def trace(logger: logging.Logger | logging.LoggerAdapter[Any], msg: str, *args: object) -> None:
    """Log at TRACE through `logger`, if TRACE is enabled for it."""
    if logger.isEnabledFor(TRACE):
        logger.log(TRACE, msg, *args, stacklevel=2)


class MessageTrace:
    """Logs messages at TRACE, at most `per_second` (bursts of `burst`); counts the rest.

    One per runtime, so the bound holds for all flows together.
    """

    def __init__(self, logger: logging.Logger | None = None, *,
                 per_second: float = TRACE_PER_S, burst: int = TRACE_BURST,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger or logging.getLogger("flowengine.trace")
        self.per_second = per_second
        self.burst = float(burst)
        self.skipped = 0  # not logged since the last line that was
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(TRACE)

    def __call__(self, flow: str, node: str, port: str, topic: str, value: object) -> None:
        now = self._clock()
        tokens = min(self.burst, self._tokens + (now - self._last) * self.per_second)
        self._last = now
        if tokens < 1.0:
            self._tokens = tokens
            self.skipped += 1
            return
        self._tokens = tokens - 1.0
        if self.skipped:
            self.logger.log(TRACE, "%d messages not traced (more than %g a second)",
                            self.skipped, self.per_second)
            self.skipped = 0
        text = repr(value)
        if len(text) > _TRACE_VALUE_CHARS:
            text = text[:_TRACE_VALUE_CHARS - 3] + "..."
        self.logger.log(TRACE, "%s/%s:%s %s = %s", flow, node, port, topic, text)
