"""A Victron-style battery service in a process of its own, for a test to SIGKILL.

    python tests/faults/battery_service.py ADDRESS NAME FIRST_SOC

Owns NAME on the bus at ADDRESS and raises /Soc by 0.1 from FIRST_SOC every 50 ms
(so a follower sees changes), until killed. Prints "ready" once the name is owned.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from sim.venus.tree import SimService


async def serve(address: str, name: str, soc: float) -> None:
    service = SimService(name, units={"/Soc": "%"})
    service.update({"/Soc": soc, "/DeviceInstance": 512, "/Connected": 1})
    await service.start(address)
    print("ready", flush=True)
    try:
        while True:
            await asyncio.sleep(0.05)
            soc = round(soc + 0.1, 1)
            service.update({"/Soc": soc})
    finally:
        await service.close()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2], float(sys.argv[3])))
