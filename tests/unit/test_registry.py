"""The registry of node types: what loading them costs."""

from __future__ import annotations

import subprocess
import sys


def test_loading_every_node_type_does_not_load_aiohttp() -> None:
    """aiohttp (~20 MB) is loaded with the first HTTP session, not with the node types:
    a GX without HTTP devices does not pay for it."""
    code = ("import sys; from flowengine.registry import Registry; Registry.default(); "
            "print('aiohttp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "False"
