"""Shared connections: opened once on first use, defaults without a site entry, closed last."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from conftest import run

from flowengine.connections import ConnectionKind, Connections
from flowengine.node import option


@dataclass(frozen=True, kw_only=True)
class BusConfig:
    address: str = option("where", default="unix:path=/run/bus")


def make_kind(log: list[str]) -> ConnectionKind:
    @contextlib.asynccontextmanager
    async def open_bus(name: str, config: BusConfig) -> AsyncIterator[str]:
        log.append(f"open {name} {config.address}")
        yield f"{name}@{config.address}"
        log.append(f"close {name}")

    return ConnectionKind("bus", BusConfig, open_bus, defaults={"system": {}})


def test_default_connection_opens_once_without_a_site_entry() -> None:
    log: list[str] = []

    async def scenario() -> None:
        conns = Connections({"bus": make_kind(log)})
        assert conns.configured("bus") == ["system"]
        first = await conns.get("bus", "system")
        assert first == await conns.get("bus", "system") == "system@unix:path=/run/bus"
        await conns.aclose()

    run(scenario())
    assert log == ["open system unix:path=/run/bus", "close system"]


def test_site_entry_wins_over_the_default_and_unknown_names_say_where_to_add_them() -> None:
    log: list[str] = []

    async def scenario() -> None:
        conns = Connections({"bus": make_kind(log)},
                            {"bus": {"system": {"address": "tcp:host=gx"}}})
        assert await conns.get("bus", "system") == "system@tcp:host=gx"
        with pytest.raises(LookupError, match=r"connections: bus: other"):
            await conns.get("bus", "other")
        with pytest.raises(LookupError, match="no connection kind 'mqtt'"):
            await conns.get("mqtt", "main")
        await conns.aclose()

    run(scenario())
    assert log == ["open system tcp:host=gx", "close system"]
