"""Process and broker helpers of the benchmarks: a mosquitto of their own on a free
loopback port, and the CPU time and memory of a contender's process tree (/proc).

Linux only. `bench/mqtt.py`, `bench/exporter.py` and `bench/soak.py` use them.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["cpu_s", "free_port", "mosquitto", "peak_rss_mb", "reset_peak", "rss_mb", "total_cpu",
           "tree"]

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def mosquitto(directory: Path) -> Iterator[int]:
    """A mosquitto of our own on a free loopback port; yields the port. Synchronous (it
    waits for the port to answer): enter it before `asyncio.run`, as the benches do."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\n"
                    "allow_anonymous true\npersistence false\nmax_queued_messages 100000\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("mosquitto did not start (scripts/system-deps installs it)")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


def tree(pid: int) -> list[int]:
    """A process and its descendants (Node-RED could run under npm's node)."""
    try:
        kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return [pid]
    return [pid, *(p for k in kids for p in tree(k))]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def total_cpu(pid: int) -> float:
    """User + system CPU seconds of the process tree."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def rss_mb(pid: int) -> float:
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE
    return total / 1e6


def peak_rss_mb(pid: int) -> float:
    """VmHWM of the process tree: the most RSS since start or since reset_peak."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) * 1024
    return total / 1e6


def reset_peak(pid: int) -> None:
    for p in tree(pid):
        try:
            Path(f"/proc/{p}/clear_refs").write_text("5")
        except OSError as exc:
            print(f"peak RSS of {p} not reset ({exc}): it counts from the start",
                  file=sys.stderr)
