"""Shared connections (config nodes, as in Node-RED): one per broker, bus or session.

A connection kind (registered by a node package, e.g. "mqtt") declares its config
dataclass and how to open one connection as an async context manager. The runtime
opens each connection the first time a node asks for it, shares it with every flow,
and closes it last, after every flow has stopped.

A flow file run on its own (no site file) gets the kind's `standalone` names as well:
each is another name of one of its defaults (the mqtt kind: `main` is the GX's own broker,
`local`), so a shipped flow that publishes to `main` runs as it is; `validate` knows the
same names, so what it passes, `run` can open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from flowengine.schema import build_config

__all__ = ["ConnectionKind", "Connections"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionKind:
    """How to open connections of one kind, and the config they take."""

    name: str
    config_class: type[Any]
    open: Callable[[str, Any], AbstractAsyncContextManager[Any]]
    summary: str = ""
    # connections that work without a site-file entry, by name: their config (a
    # mapping checked like a site entry), e.g. {"system": {}} for the system D-Bus
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # observe(connection, runtime): make an open connection report the runtime's events
    # and node statuses (the site file's `observe: [kind.name]`); None if it cannot
    observe: Callable[[Any, Any], None] | None = None
    # lint(name, config): warnings about one configured connection for `validate`, which
    # prints them and still passes (e.g. a password sent without TLS); None if none
    lint: Callable[[str, Any], list[str]] | None = None
    # name -> the default it stands for when a flow file runs without a site file
    # (e.g. {"main": "local"}); a site file names its own connections and gets none of these
    standalone: Mapping[str, str] = field(default_factory=dict)

    def names(self, *, standalone: bool) -> list[str]:
        """The names that open without a site-file entry."""
        return [*self.defaults, *(self.standalone if standalone else ())]


class Connections:
    """The runtime's shared connections, opened lazily, closed together."""

    def __init__(self, kinds: Mapping[str, ConnectionKind],
                 configs: Mapping[str, Mapping[str, Any]] | None = None, *,
                 standalone: bool = False) -> None:
        """`standalone`: no site file; the kinds' standalone names work too."""
        self._kinds = dict(kinds)
        self._standalone = standalone
        self._configs = {k: dict(v) for k, v in (configs or {}).items()}
        self._open: dict[tuple[str, str], Any] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._stack = contextlib.AsyncExitStack()

    def configured(self, kind: str) -> list[str]:
        """Names of `kind` that can be opened: the site's, then the kind's defaults."""
        names = list(self._configs.get(kind, {}))
        spec = self._kinds.get(kind)
        if spec is not None:
            names += [n for n in spec.names(standalone=self._standalone) if n not in names]
        return names

    async def get(self, kind: str, name: str = "default") -> Any:
        """The shared connection `kind`/`name`, opened on first use."""
        spec = self._kinds.get(kind)
        if self._standalone and spec is not None and name in spec.standalone \
                and name not in self._configs.get(kind, {}):
            alias, name = name, spec.standalone[name]
            if (kind, name) not in self._open:
                log.info("connection %s.%s is %s.%s (no site file names it)", kind, alias,
                         kind, name)
        key = (kind, name)
        if key in self._open:
            return self._open[key]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self._open:
                return self._open[key]
            if spec is None:
                raise LookupError(f"no connection kind '{kind}' is installed")
            config = self._configs.get(kind, {}).get(name)
            if config is None and name in spec.defaults:
                config = spec.defaults[name]
            if isinstance(config, Mapping):  # not yet built (the CLI builds checked ones)
                config = build_config(spec.config_class, config)
            if config is None:
                raise LookupError(
                    f"connection '{kind}.{name}' is not configured in the site file "
                    f"(connections: {kind}: {name}: ...)")
            conn = await self._stack.enter_async_context(spec.open(name, config))
            log.info("connection %s.%s opened", kind, name)
            self._open[key] = conn
            return conn

    async def aclose(self) -> None:
        """Close every open connection, newest first."""
        self._open.clear()
        await self._stack.aclose()
