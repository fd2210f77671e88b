"""Socket reads that do not map memory: `small_reads(transport)`.

asyncio's selector transport reads up to 256 KiB at a time (`max_size`). A bytes object
of that size is above glibc malloc's mmap threshold (128 KiB), so every read maps
256 KiB, shrinks it to what arrived and unmaps it: `mmap`, `mremap` and `munmap` around
each `recv`. At 1,000 MQTT messages a second, one read each, those were half the system
calls of the process (strace: epoll_wait, recvfrom, sendto, plus the three). Reads of at
most `READ_BYTES` come from the heap instead; a burst takes a few more reads, each still
holding hundreds of messages.
"""

from __future__ import annotations

import asyncio

__all__ = ["READ_BYTES", "small_reads"]

READ_BYTES = 64 * 1024


def small_reads(transport: asyncio.BaseTransport) -> None:
    """Make `transport` read at most READ_BYTES at a time. A transport without a read
    size of its own (TLS, another event loop's) is left as it is."""
    size = getattr(transport, "max_size", None)
    if isinstance(size, int) and size > READ_BYTES:
        transport.max_size = READ_BYTES  # type: ignore[attr-defined]
