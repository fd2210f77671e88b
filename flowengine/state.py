"""Persistent node state: one small JSON object per node, written atomically, not often.

A node keeps counters and energy totals in `ctx.state`, a `NodeState`. The `StateStore`
keeps each one in ``<directory>/<flow>/<node>.json``::

    store = StateStore("/data/esess/state", min_interval_s=60)
    state = store.node_state("time-to-go", "seconds")
    state.set("total_wh", state.get("total_wh", 0) + 12.5)
    store.flush_due()       # from one timer, sleeping store.next_due_in() between calls
    store.flush("time-to-go")   # when the flow stops

The target box stores on flash, so a file is written only when its state changed, and by
`flush_due` at most once per `min_interval_s`. A write goes to a temporary file in the
same directory, is fsynced and renamed onto the target: after a crash or power loss the
file holds either the old state or the new one, never a mix.

A file that cannot be parsed is renamed aside to ``<name>.corrupt-<UTC timestamp>`` (user
data is never deleted), the node starts empty, and the problem is logged and kept in
`StateStore.problems`. A failed write is logged once, kept dirty, and retried. Neither
raises: losing a counter is bad, stopping the house's energy control for it is worse.

Ids become file names by percent-encoding everything but ``[A-Za-z0-9_.@~-]`` (and a
leading ``.``): ``meter/l1`` is stored as ``meter%2Fl1.json``. The mapping is readable and
collision-free, and no id can climb out of the state directory.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from flowengine.atomic import write_atomically
from flowengine.errors import StateError
from flowengine.jsontext import JsonTextError, load_json

__all__ = ["NodeState", "StateStore", "file_name"]

logger = logging.getLogger(__name__)

_JSON_TYPE_NAMES = {list: "an array", str: "a string", int: "a number", float: "a number",
                    bool: "a boolean", type(None): "null"}


def file_name(ident: str) -> str:
    """The file-system name of a flow or node id (without the ``.json`` suffix)."""
    if not ident:
        raise ValueError("an empty id has no state file name")
    name = quote(ident, safe="@-_.~")  # '/' -> %2F, ':' -> %3A, '%' -> %25
    if name.startswith("."):  # no hidden files, no '.' or '..'
        name = "%2E" + name[1:]
    return name


def _encode(key: str, value: Any) -> str:
    """`value` as canonical JSON text; TypeError (naming `key`) if it is not JSON."""
    if not isinstance(key, str):
        raise TypeError(f"state key {key!r}: keys must be strings, not {type(key).__name__}")
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False, ensure_ascii=False,
                          separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"state key {key!r}: value is not JSON-serialisable: {exc}") from exc


class NodeState(Mapping[str, Any]):
    """The persistent key/value state of one node. Values are JSON; read it like a dict.

    A value is stored as its JSON form (a tuple comes back as a list), as a copy: to change
    a nested value, change your copy and `set` it again. The state is dirty (to be saved)
    only after a `set`, `update` or `delete` that changed something.
    """

    def __init__(self, values: Mapping[str, Any] | None = None, *,
                 on_dirty: Callable[[], None] | None = None) -> None:
        self._values: dict[str, Any] = {}
        self._texts: dict[str, str] = {}  # the JSON text of each value, to detect changes
        self._dirty = False
        self._on_dirty = on_dirty  # called when a clean state becomes dirty
        for key, value in (values or {}).items():
            text = _encode(key, value)
            self._texts[key] = text
            self._values[key] = json.loads(text)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        dirty = " dirty" if self._dirty else ""
        return f"<NodeState{dirty} {self._values!r}>"

    @property
    def dirty(self) -> bool:
        """True when the state changed since it was loaded or last saved."""
        return self._dirty

    def set(self, key: str, value: Any) -> None:
        """Set one value; raises TypeError at once if it is not JSON-serialisable."""
        self._apply(key, _encode(key, value))

    def update(self, values: Mapping[str, Any]) -> None:
        """Set several values; if any is not JSON, raises TypeError and sets none."""
        texts = [(key, _encode(key, value)) for key, value in values.items()]
        for key, text in texts:
            self._apply(key, text)

    def delete(self, key: str) -> None:
        """Remove a key; removing a key that is not there changes nothing."""
        if key in self._values:
            del self._values[key]
            del self._texts[key]
            self._set_dirty()

    def _apply(self, key: str, text: str) -> None:
        if self._texts.get(key) == text:
            return
        self._texts[key] = text
        self._values[key] = json.loads(text)
        self._set_dirty()

    def _set_dirty(self) -> None:
        if not self._dirty:
            self._dirty = True
            if self._on_dirty is not None:
                self._on_dirty()

    def _document(self) -> str:
        """The whole state as the text of its file."""
        return json.dumps(self._values, sort_keys=True, ensure_ascii=False) + "\n"

    def _mark_clean(self) -> None:
        self._dirty = False


@dataclass(eq=False)
class _Entry:
    """A cached NodeState and what the store knows about its file."""

    state: NodeState
    path: Path | None  # None: kept in memory only
    last_attempt: float | None = None  # clock time of the last write attempt
    failing: bool = False  # the last write failed (and was logged)


class StateStore:
    """Loads, caches and saves the `NodeState` of every node, under one directory.

    `directory` None keeps everything in memory (tests, `validate`): nothing is read or
    written, and flushing only marks states clean. `clock` is monotonic seconds.
    """

    def __init__(self, directory: str | os.PathLike[str] | None, *,
                 min_interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not min_interval_s >= 0:
            raise ValueError(f"min_interval_s must be >= 0, not {min_interval_s!r}")
        self._directory = None if directory is None else Path(directory)
        self._min_interval_s = float(min_interval_s)
        self._clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        self.problems: list[str] = []  # state files set aside, one line each
        self.on_dirty: Callable[[], None] | None = None
        """called when any state becomes dirty (the runtime wakes its flusher with it)"""

    @property
    def directory(self) -> Path | None:
        """The state directory, or None for an in-memory store."""
        return self._directory

    def path_for(self, flow_id: str, node_id: str) -> Path | None:
        """The file that holds a node's state (None for an in-memory store)."""
        if self._directory is None:
            return None
        return self._directory / file_name(flow_id) / f"{file_name(node_id)}.json"

    def node_state(self, flow_id: str, node_id: str) -> NodeState:
        """The state of one node, loaded on first use and the same object afterwards."""
        key = (flow_id, node_id)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._load(self.path_for(flow_id, node_id))
            self._entries[key] = entry
        return entry.state

    def flush_due(self) -> int:
        """Write each changed state not written for `min_interval_s`; return how many."""
        now = self._clock()
        due = [e for e in self._entries.values()
               if e.state.dirty and self._due_at(e) <= now]
        return sum(self._save(entry, now) for entry in due)

    def flush(self, flow_id: str | None = None) -> int:
        """Write every changed state now (of one flow, or all); return how many."""
        now = self._clock()
        due = [e for (flow, _), e in self._entries.items()
               if e.state.dirty and (flow_id is None or flow == flow_id)]
        return sum(self._save(entry, now) for entry in due)

    def next_due_in(self) -> float | None:
        """Seconds until `flush_due` would write something; None if nothing changed."""
        due = [self._due_at(e) for e in self._entries.values() if e.state.dirty]
        if not due:
            return None
        return max(0.0, min(due) - self._clock())

    def discard(self, flow_id: str) -> None:
        """Forget the cached states of a flow (call after it stopped and was flushed)."""
        for key in [k for k in self._entries if k[0] == flow_id]:
            entry = self._entries.pop(key)
            if entry.state.dirty and entry.path is not None:
                logger.warning("%s: state discarded with unsaved changes", entry.path)

    # -- reading -----------------------------------------------------------------------

    def _load(self, path: Path | None) -> _Entry:
        if path is None:
            return _Entry(NodeState(on_dirty=self._dirtied), None)
        try:
            values = _read(path)
        except StateError as exc:
            return _Entry(NodeState(on_dirty=self._dirtied), self._set_aside(path, exc))
        return _Entry(NodeState(values, on_dirty=self._dirtied), path)

    def _dirtied(self) -> None:
        if self.on_dirty is not None:
            self.on_dirty()

    def _set_aside(self, path: Path, problem: StateError) -> Path | None:
        """Rename a bad file out of the way; the path to save to, or None if it failed."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        target = path.with_name(f"{path.name}.corrupt-{stamp}")
        counter = 1
        while target.exists() or target.is_symlink():
            counter += 1
            target = path.with_name(f"{path.name}.corrupt-{stamp}-{counter}")
        try:
            os.rename(path, target)
        except OSError as exc:
            message = (f"{path}: {problem}; could not set it aside ({exc}); "
                       "this node's state is kept in memory only")
            result = None
        else:
            message = f"{path}: {problem}; set aside as {target.name}, starting empty"
            result = path
        logger.error("%s", message)
        self.problems.append(message)
        return result

    # -- writing -----------------------------------------------------------------------

    def _due_at(self, entry: _Entry) -> float:
        if entry.last_attempt is None:
            return -math.inf
        return entry.last_attempt + self._min_interval_s

    def _save(self, entry: _Entry, now: float) -> int:
        """Write one state; 1 if written, 0 if kept in memory or the write failed."""
        entry.last_attempt = now
        if entry.path is None:
            entry.state._mark_clean()
            return 0
        try:
            write_atomically(entry.path, entry.state._document())
        except OSError as exc:
            if not entry.failing:
                logger.error("%s: cannot save state (%s); keeping it in memory, will retry",
                             entry.path, exc)
                entry.failing = True
            return 0
        if entry.failing:
            logger.info("%s: state saved again", entry.path)
            entry.failing = False
        entry.state._mark_clean()
        return 1


def _read(path: Path) -> dict[str, Any]:
    """The object in a state file ({} if there is none); StateError if it is bad."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError as exc:
        raise StateError(f"cannot read the state file: {exc.strerror or exc}") from exc
    try:
        value = load_json(data)  # no NaN, 1e400 or deep nesting: what a state cannot hold
    except JsonTextError as exc:
        raise StateError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        kind = _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
        raise StateError(f"not a JSON object but {kind}")
    return value

