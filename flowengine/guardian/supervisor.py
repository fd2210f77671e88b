"""The guardian process: starts the runtime as its child and keeps its safe states.

    python3 -m flowengine.guardian --state-dir /data/es-ESS-flows/state -- <runtime command>

One thread, one `select` loop, standard library only. The child gets one end of a
socketpair (its number in ESESS_GUARDIAN_FD) and speaks JSON lines over it:

    {"op": "hello", "pid": 1234}                      once, when its event loop runs
    {"op": "beat"}                                    every second
    {"op": "set", "id": 7, "key": "flow/node", "action": {...}}   register or update
    {"op": "drop", "id": 8, "key": "flow/node"}       the node applied its safe state

and gets `{"id": 7, "ok": true}` (or `"ok": false, "error": ...`) once the change is
on disk. What the guardian does:

- the runtime exits (any way) with actions still registered: apply them all;
- no heartbeat for `timeout_s` after hello: kill the runtime (SIGKILL), apply them;
- either way, start a fresh runtime after a backoff (1 s doubling to 60 s, back to 1 s
  after a minute of running), unless the runtime ended cleanly (exit code 0);
- at its own start, apply what an unclean end (power loss, kill -9 of both) left on
  disk, before the runtime starts;
- SIGTERM / SIGINT: pass SIGTERM on, wait for the runtime (at most `stop_timeout_s`),
  apply what it left registered, exit.

Every action is bounded by its own timeout and all are tried even when one fails.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from flowengine.guardian.actions import ActionError, apply_action, check_action, describe
from flowengine.guardian.store import PendingStore

TYPE_CHECKING = False  # typing costs the guardian 2 MB resident; mypy still sees these
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ENV_FD", "Guardian"]

log = logging.getLogger("flowengine.guardian")

ENV_FD = "ESESS_GUARDIAN_FD"
BACKOFF_FIRST_S, BACKOFF_MAX_S, STABLE_AFTER_S = 1.0, 60.0, 60.0
MAX_LINE = 256 * 1024  # one registration is a few hundred bytes
RETRY_PAUSE_S = 1.0


class Guardian:
    """See the module docstring."""

    def __init__(self, command: Sequence[str], *, state_dir: Path | None,
                 timeout_s: float = 10.0, start_timeout_s: float = 120.0,
                 stop_timeout_s: float = 10.0, pending_wait_s: float = 60.0) -> None:
        self.command = list(command)
        self.store = PendingStore(state_dir)
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.pending_wait_s = pending_wait_s
        self.registered: dict[str, dict[str, Any]] = {}
        self.stopping = False
        self.failures = 0
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    # -- the whole life ---------------------------------------------------------------------
    def run(self) -> int:
        """Until SIGTERM / SIGINT, or until the runtime ends cleanly; 0 then."""
        self._install_signals()
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        left = self.store.load()
        if left:
            log.warning("an unclean end left %d safe action(s) pending; applying "
                        "them before the runtime starts", len(left))
            failed = self.apply(left, patience_s=self.pending_wait_s)
            for key in failed:
                log.error("gave up on pending %s: %s", key, describe(left[key]))
            self.store.save({})
        while not self.stopping:
            started = time.monotonic()
            _, clean = self._supervise_one()
            if self.stopping or clean:
                break
            if time.monotonic() - started >= STABLE_AFTER_S:
                self.failures = 0
            self.failures += 1
            delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (self.failures - 1))
            log.warning("starting the runtime again in %.0f s (failure %d)", delay,
                        self.failures)
            self._sleep(delay)
        log.info("stopped")
        return 0

    def _supervise_one(self) -> tuple[int, bool]:
        """Run one runtime to its end; (exit code, ended cleanly)."""
        ours, theirs = socket.socketpair()
        env = dict(os.environ, **{ENV_FD: str(theirs.fileno())})
        try:
            child = subprocess.Popen(self.command, pass_fds=(theirs.fileno(),), env=env)
        except OSError as exc:
            log.error("cannot start the runtime (%s): %s", self.command[0], exc)
            ours.close()
            theirs.close()
            return 127, False
        theirs.close()
        log.info("runtime started (pid %d)", child.pid)
        try:
            return self._watch(child, ours)
        finally:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(ours)
            ours.close()

    def _watch(self, child: subprocess.Popen[bytes], channel: socket.socket) -> tuple[int, bool]:
        channel.setblocking(False)
        self._selector.register(channel, selectors.EVENT_READ, "channel")
        exit_fd = _pidfd(child.pid)
        if exit_fd is not None:
            self._selector.register(exit_fd, selectors.EVENT_READ, "exit")
        reader = _LineReader(channel)
        alive_until = time.monotonic() + self.start_timeout_s
        hello = False
        term_sent_at: float | None = None
        try:
            while True:
                if self.stopping and term_sent_at is None:
                    term_sent_at = time.monotonic()
                    with contextlib.suppress(ProcessLookupError):
                        child.send_signal(signal.SIGTERM)
                now = time.monotonic()
                deadline = alive_until
                if term_sent_at is not None:
                    deadline = min(deadline, term_sent_at + self.stop_timeout_s)
                # without a pidfd the exit is noticed by the channel's end or in 1 s
                wait = max(0.0, deadline - now) if exit_fd is not None else \
                    min(1.0, max(0.0, deadline - now))
                events = self._selector.select(wait)
                for key, _ in events:
                    if key.data == "wake":
                        self._drain_wake()
                    elif key.data == "channel":
                        lines = reader.read()
                        if lines is None:  # the runtime closed its end: it is going
                            self._selector.unregister(channel)
                            continue
                        if self._handle_all(lines, channel):
                            hello = True
                        alive_until = time.monotonic() + (
                            self.timeout_s if hello else self.start_timeout_s)
                code = child.poll()
                if code is not None:  # what it said before it went counts too
                    while (lines := reader.read()):
                        self._handle_all(lines, channel)
                    return self._ended(code)
                now = time.monotonic()
                if term_sent_at is not None and now >= term_sent_at + self.stop_timeout_s:
                    log.error("the runtime did not stop within %.0f s of SIGTERM; "
                              "killing it", self.stop_timeout_s)
                    return self._kill(child)
                if now >= alive_until:
                    if hello:
                        log.error("no heartbeat from the runtime for %.0f s: it "
                                  "hangs; killing it", self.timeout_s)
                    else:
                        log.error("the runtime did not come up within %.0f s; "
                                  "killing it", self.start_timeout_s)
                    return self._kill(child)
        finally:
            if exit_fd is not None:
                self._selector.unregister(exit_fd)
                os.close(exit_fd)

    def _kill(self, child: subprocess.Popen[bytes]) -> tuple[int, bool]:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        try:
            code = child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log.critical("the runtime (pid %d) does not die", child.pid)
            code = -9
        self._apply_registered("hung runtime")
        return code, False

    def _ended(self, code: int) -> tuple[int, bool]:
        how = f"exit code {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
        if self.registered:
            log.error("the runtime ended (%s) with %d safe action(s) it did not "
                      "apply itself", how, len(self.registered))
            self._apply_registered(how)
        elif code == 0:
            log.info("the runtime ended cleanly")
        else:
            log.warning("the runtime ended (%s)", how)
        return code, code == 0

    def _apply_registered(self, why: str) -> None:
        if not self.registered:
            return
        log.warning("applying %d safe action(s) (%s)", len(self.registered), why)
        failed = self.apply(self.registered, patience_s=RETRY_PAUSE_S)
        for key in failed:
            log.critical("safe action %s FAILED for good: %s", key,
                         describe(self.registered[key]))
        self.registered = {}
        self.store.save({})

    # -- messages from the runtime ----------------------------------------------------------
    def _handle_all(self, lines: list[bytes], channel: socket.socket) -> bool:
        alive = False
        for line in lines:
            alive = self._handle(line, channel) or alive
        return alive

    def _handle(self, line: bytes, channel: socket.socket) -> bool:
        """Act on one line; True for hello and heartbeats (the runtime's loop turns)."""
        try:
            msg = json.loads(line)
            op = msg["op"]
        except (ValueError, KeyError, TypeError, RecursionError):
            log.error("unreadable line from the runtime (%d bytes)", len(line))
            return False
        if op in ("beat", "hello"):
            if op == "hello":
                log.info("runtime %s is up; heartbeat timeout %.0f s",
                         msg.get("pid"), self.timeout_s)
            return True
        reply: dict[str, Any] = {"id": msg.get("id"), "ok": True}
        try:
            key = msg["key"]
            if not isinstance(key, str):
                raise ActionError("the key is not a text")
            if op == "set":
                action = check_action(msg.get("action"))
                changed = self.registered.get(key) != action
                self.registered[key] = action
                if changed:
                    log.info("holding for %s: %s", key, describe(action))
            elif op == "drop":
                changed = self.registered.pop(key, None) is not None
                if changed:
                    log.info("released %s", key)
            else:
                raise ActionError(f"unknown op {op!r}")
            if changed:
                self.store.save(self.registered)
        except (ActionError, KeyError, OSError) as exc:
            reply = {"id": msg.get("id"), "ok": False, "error": str(exc)}
            log.error("refused %s from the runtime: %s", op, exc)
        with contextlib.suppress(OSError):  # a runtime that stopped reading is dying anyway
            channel.send(json.dumps(reply).encode() + b"\n")
        return True

    # -- applying actions -------------------------------------------------------------------
    def apply(self, actions: dict[str, dict[str, Any]], *, patience_s: float) -> list[str]:
        """Apply every action, each within its timeout; those that fail are tried again
        (pausing 1 s, doubling) until `patience_s` has passed. The keys that failed."""
        todo = list(actions)
        give_up = time.monotonic() + patience_s
        pause = RETRY_PAUSE_S
        while True:
            failed = []
            for key in todo:
                action = actions[key]
                began = time.monotonic()
                try:
                    apply_action(action)
                except ActionError as exc:
                    log.error("%s: %s failed: %s", key, describe(action), exc)
                    failed.append(key)
                else:
                    log.warning("%s: applied %s (%.0f ms)", key, describe(action),
                                (time.monotonic() - began) * 1000)
            if not failed or self.stopping or time.monotonic() + pause > give_up:
                return failed
            self._sleep(pause)
            pause = min(pause * 2, 10.0)
            todo = failed

    # -- signals and sleeping ---------------------------------------------------------------
    def _install_signals(self) -> None:
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        if not self.stopping:
            log.info("%s: stopping", signal.Signals(signum).name)
        self.stopping = True

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(64):
                pass

    def _sleep(self, seconds: float) -> None:
        """Sleep, but wake for a signal."""
        until = time.monotonic() + seconds
        while not self.stopping:
            left = until - time.monotonic()
            if left <= 0:
                return
            for key, _ in self._selector.select(left):
                if key.data == "wake":
                    self._drain_wake()


class _LineReader:
    """Whole lines from the runtime's end of the channel, as they come."""

    def __init__(self, channel: socket.socket) -> None:
        self.channel = channel
        self.buffer = b""

    def read(self) -> list[bytes] | None:
        """The lines complete so far ([] if none); None once the runtime closed its end."""
        try:
            data = self.channel.recv(65536)
        except BlockingIOError:
            return []
        except OSError:
            return None
        if not data:
            return None
        lines = (self.buffer + data).split(b"\n")
        self.buffer = lines.pop()
        if len(self.buffer) > MAX_LINE:
            log.error("a line of over %d bytes from the runtime was dropped", MAX_LINE)
            self.buffer = b""
        return lines


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when `pid` exits (Linux 5.3+), else None."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError:
        return None
    return fd
