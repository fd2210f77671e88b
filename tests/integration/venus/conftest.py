"""The host release archive, built once per session by scripts/bundle --host."""

from __future__ import annotations

from pathlib import Path

import pytest

from .venuskit import build_host_bundle


@pytest.fixture(scope="session")
def host_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_host_bundle(tmp_path_factory.mktemp("dist"))
