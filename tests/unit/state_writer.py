"""Save one node's state over and over until killed; the kill -9 test in test_state.py.

Usage: ``python3 tests/unit/state_writer.py DIR``. Each round raises ``counter`` by one,
sets a ~20 KB ``payload`` derived from it (so a torn file would show) and a growing
``seen`` dict, and calls ``flush()``, which writes the file every time.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from flowengine.state import StateStore

FLOW_ID = "writer"
NODE_ID = "counter"


def payload_for(counter: int) -> str:
    """The payload that goes with a counter value (20,000 characters)."""
    return f"{counter:010d}" * 2000


def main(directory: str) -> None:
    store = StateStore(directory)
    state = store.node_state(FLOW_ID, NODE_ID)
    counter = int(state.get("counter", 0))
    seen = dict(state.get("seen", {}))
    while True:
        counter += 1
        seen[str(counter % 500)] = counter
        state.update({"counter": counter, "payload": payload_for(counter), "seen": seen})
        store.flush()


if __name__ == "__main__":
    main(sys.argv[1])
