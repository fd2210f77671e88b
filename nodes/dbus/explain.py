"""What to tell a user when D-Bus fails in the expected ways: no bus, a name taken.

Each text is one line that says what is wrong and how to fix it. Finding it out is
best effort: a question the bus does not answer leaves that part out.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from flowengine.errors import FlowEngineError

if TYPE_CHECKING:
    from nodes.dbus.bus import BusConnection

__all__ = ["name_taken_text", "no_bus_hint", "process_command"]

_DBUS = "org.freedesktop.DBus"
_ASK_TIMEOUT_S = 1.0
_COMMAND_CHARS = 160


def no_bus_hint(address: str | None) -> str:
    """How to get a bus when connecting to `address` (None: the system bus) failed."""
    if address is None:
        return ("no D-Bus system bus here (a GX always has one): for a simulated Venus OS "
                "run `esess-flowctl sim` and export the DBUS_SYSTEM_BUS_ADDRESS it prints")
    return (f"is the bus at DBUS_SYSTEM_BUS_ADDRESS={address} still running? "
            "(`esess-flowctl sim` prints the address of its own)")


async def name_taken_text(bus: BusConnection, name: str) -> str:
    """Who owns `name`: its unique name, process id and command, and what to do."""
    owner = pid = None
    with contextlib.suppress(FlowEngineError, TimeoutError, OSError):
        owner = await bus.name_owner(name)
    if owner:
        with contextlib.suppress(FlowEngineError, TimeoutError, OSError, ValueError):
            (number,) = await bus.call(_DBUS, "/org/freedesktop/DBus",
                                       "GetConnectionUnixProcessID", interface=_DBUS,
                                       signature="s", body=[owner], timeout_s=_ASK_TIMEOUT_S)
            pid = int(number)
    who = "another connection"
    if owner and pid is not None:
        command = process_command(pid)
        who = f"{owner}, process {pid}" + (f" ({command})" if command else "")
    elif owner:
        who = owner
    return (f"the bus name '{name}' is owned by {who}; stop that process first (the old "
            "es-ESS uses the same names), or give this service another name")


def process_command(pid: int, proc: Path = Path("/proc")) -> str:
    """The command line of process `pid` ("" when it cannot be read), shortened."""
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    text = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    return text if len(text) <= _COMMAND_CHARS else text[:_COMMAND_CHARS - 3] + "..."
