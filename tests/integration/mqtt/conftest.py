"""Fixtures of the MQTT integration tests: a real mosquitto (plain and TLS)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit.mosquitto import Mosquitto, make_ca


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A broker shared by the tests that only publish and subscribe."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def own_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker of one test's own, which it may stop and start again."""
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def tls_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A TLS broker with a certificate from a throwaway CA (`.tls["ca"]`)."""
    directory = tmp_path_factory.mktemp("mosquitto-tls")
    broker = Mosquitto(directory, tls=make_ca(directory, "good"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
