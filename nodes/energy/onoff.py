"""When a switched (on/off) consumer of the solar overhead distributor is switched.

Pure: no I/O, no clock of its own (every call gets `now`, monotonic seconds), so the
rules are tested on their own and `energy.switch` only carries them out.

- The allowance asks: at least the request -> on; exactly 0 -> off; anything between
  leaves the last wish as it was (an all-or-nothing consumer cannot take part of it).
- A change of the command waits for the minimum times: on only `min_off_s` after the
  last switch-off, off only `min_on_s` after the last switch-on while the device is
  confirmed on. The start counts as a switch-off (the runtime's stop before it
  switched the consumer off), so a restart does not shorten the off time.
- A forced off (the allowance is lost, the broker is gone) ignores the minimum on time:
  safety first. It lasts until the next allowance.
- The actual state is the device's confirmed one; unknown (the device does not answer)
  counts as off. When the device does not do what it was told, the same command is sent
  again, at most every `repeat_s`; such a repeat is no change and does not wait.
- An off is also sent when the device is unknown but was last commanded on: what may be
  running is switched off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Decision", "OnOffPolicy"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do now: `command` True (switch on), False (off) or None (nothing); when a
    change waits for a minimum time, `wait_s` says when to ask again; `reason` is a few
    words for the status line."""

    command: bool | None
    wait_s: float | None = None
    reason: str = ""


class OnOffPolicy:
    """The rules of the module docstring, with the little they remember."""

    def __init__(self, *, request_w: float, min_on_s: float, min_off_s: float,
                 repeat_s: float, now: float) -> None:
        self.request_w = request_w
        self.min_on_s = min_on_s
        self.min_off_s = min_off_s
        self.repeat_s = repeat_s
        self.target: bool | None = None  # what the allowance asks for; None: nothing yet
        self.forced = False  # the target is a forced off (lost allowance, broker gone)
        self.commanded: bool | None = None  # the last command sent
        self.changed_at = now  # when the command last changed (the start: an off)
        self.sent_at = -math.inf  # when a command was last sent (a repeat waits repeat_s)

    def allowance(self, watts: float) -> None:
        """A new allowance (finite, >= 0)."""
        self.forced = False
        if watts >= self.request_w:
            self.target = True
        elif watts == 0:
            self.target = False

    def force_off(self) -> None:
        """Off now, whatever the minimum on time says, until the next allowance."""
        self.target = False
        self.forced = True

    def sent(self, on: bool, now: float) -> None:
        """A command went out (or was tried: a timeout may still have switched)."""
        if on != self.commanded:
            self.commanded = on
            self.changed_at = now
        self.sent_at = now

    def decide(self, device_on: bool | None, now: float) -> Decision:
        """What to do now, given the device's confirmed state (None: unknown)."""
        target = self.target
        if target is None:
            return Decision(None, reason="waiting for the first allowance")
        running = device_on is True
        if target:
            if running:
                return Decision(None)
            if self.commanded is True:
                return self._repeat(True, now, "switched on, not confirmed yet")
            wait = self.changed_at + self.min_off_s - now
            if wait > 0:
                return Decision(None, wait, "waiting for the min off time to switch on")
            return Decision(True)
        if not running:
            if self.commanded is True:  # unknown, maybe running: off, no waiting
                return Decision(False)
            return Decision(None)
        if self.commanded is False:
            return self._repeat(False, now, "switched off, still on")
        wait = self.changed_at + self.min_on_s - now
        if wait > 0 and not self.forced:
            return Decision(None, wait, "waiting for the min on time to switch off")
        return Decision(False)

    def _repeat(self, on: bool, now: float, reason: str) -> Decision:
        wait = self.sent_at + self.repeat_s - now
        if wait > 0:
            return Decision(None, wait, reason)
        return Decision(on)
