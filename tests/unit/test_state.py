"""Persistent node state: round trips, throttling, corrupt files, failed writes, kill -9."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowengine.state import StateStore

REPO = Path(__file__).resolve().parents[2]
WRITER = Path(__file__).with_name("state_writer.py")


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name == "flowengine.state" and r.levelno == logging.ERROR]


def test_state_round_trips_across_store_instances(tmp_path: Path) -> None:
    first = StateStore(tmp_path)
    first.node_state("time-to-go", "seconds").update({"total_wh": 12.5, "ids": [1, "a"]})
    assert first.flush() == 1

    second = StateStore(tmp_path)
    state = second.node_state("time-to-go", "seconds")
    assert dict(state.items()) == {"total_wh": 12.5, "ids": [1, "a"]}
    assert not state.dirty


def test_file_is_sorted_json_with_trailing_newline(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.node_state("f", "n").update({"b": 1, "a": 2})
    store.flush()

    text = (tmp_path / "f" / "n.json").read_text(encoding="utf-8")
    assert text == '{"a": 2, "b": 1}\n'


def test_unchanged_state_is_never_written(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    state = store.node_state("f", "n")
    path = tmp_path / "f" / "n.json"
    assert store.flush() == 0
    assert not path.exists()

    state.set("count", 1)
    assert store.flush() == 1
    path.unlink()
    state.set("count", 1)  # the same value again: nothing changed

    assert not state.dirty
    assert store.flush() == 0
    assert not path.exists()


def test_nested_value_changed_and_set_again_is_saved(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    state = store.node_state("f", "n")
    state.set("totals", {"l1": 1})
    store.flush()

    totals = state["totals"]
    totals["l1"] = 2
    state.set("totals", totals)

    assert state.dirty
    assert store.flush() == 1
    assert StateStore(tmp_path).node_state("f", "n")["totals"] == {"l1": 2}


def test_flush_due_writes_a_changing_state_at_most_once_per_interval(tmp_path: Path) -> None:
    clock = FakeClock()
    store = StateStore(tmp_path, min_interval_s=60, clock=clock)
    state = store.node_state("f", "n")
    assert store.next_due_in() is None

    state.set("count", 0)
    assert store.next_due_in() == 0.0
    assert store.flush_due() == 1
    written = 1
    for second in range(1, 121):
        clock.now += 1
        state.set("count", second)
        written += store.flush_due()
        if second < 60:
            assert store.next_due_in() == 60 - second

    assert written == 3  # at 0 s, 60 s and 120 s
    assert store.next_due_in() is None


def test_flush_writes_only_the_named_flow(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    one = store.node_state("one", "n")
    two = store.node_state("two", "n")
    one.set("x", 1)
    two.set("x", 2)

    assert store.flush("one") == 1

    assert (tmp_path / "one" / "n.json").exists()
    assert not (tmp_path / "two" / "n.json").exists()
    assert not one.dirty
    assert two.dirty


def test_corrupt_file_is_set_aside_and_state_starts_empty(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "f" / "n.json"
    path.parent.mkdir()
    path.write_text('{"total_wh": 12', encoding="utf-8")
    store = StateStore(tmp_path)

    state = store.node_state("f", "n")

    assert len(state) == 0
    assert not path.exists()
    aside = list(path.parent.glob("n.json.corrupt-*"))
    assert len(aside) == 1
    assert re.fullmatch(r"n\.json\.corrupt-\d{8}T\d{6}", aside[0].name)
    assert aside[0].read_text(encoding="utf-8") == '{"total_wh": 12'
    assert len(store.problems) == 1
    assert str(path) in store.problems[0]
    assert "not valid JSON" in store.problems[0]
    [record] = error_records(caplog)
    assert str(path) in record.getMessage()
    assert aside[0].name in record.getMessage()


def test_non_object_json_file_is_treated_as_corrupt(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "f" / "n.json"
    path.parent.mkdir()
    path.write_text("[1, 2, 3]\n", encoding="utf-8")
    store = StateStore(tmp_path)

    state = store.node_state("f", "n")

    assert len(state) == 0
    assert "not a JSON object but an array" in store.problems[0]
    assert len(list(path.parent.glob("n.json.corrupt-*"))) == 1
    assert len(error_records(caplog)) == 1


@pytest.mark.parametrize("text", ['{"forward": 1e400}', '{"forward": NaN}',
                                  '{"a": ' * 50 + "1" + "}" * 50])
def test_a_number_or_nesting_no_state_can_hold_is_treated_as_corrupt(
        tmp_path: Path, text: str) -> None:
    path = tmp_path / "f" / "n.json"
    path.parent.mkdir()
    path.write_text(text, encoding="utf-8")
    store = StateStore(tmp_path)

    assert len(store.node_state("f", "n")) == 0  # the node starts (empty), not fails
    assert "not valid JSON" in store.problems[0]
    assert len(list(path.parent.glob("n.json.corrupt-*"))) == 1


def test_set_of_non_json_value_raises_type_error_naming_the_key() -> None:
    state = StateStore(None).node_state("f", "n")

    with pytest.raises(TypeError, match="'last_seen'"):
        state.set("last_seen", object())
    with pytest.raises(TypeError, match="'ratio'"):
        state.set("ratio", float("nan"))
    assert not state.dirty
    assert "last_seen" not in state


def test_update_with_one_bad_value_sets_nothing() -> None:
    state = StateStore(None).node_state("f", "n")

    with pytest.raises(TypeError, match="'bad'"):
        state.update({"good": 1, "bad": {1, 2}})

    assert len(state) == 0
    assert not state.dirty


def test_failed_write_keeps_state_dirty_and_does_not_raise(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = StateStore(tmp_path)
    state = store.node_state("f", "n")
    state.set("count", 1)
    (tmp_path / "f").write_text("a file where the flow's directory belongs")

    assert store.flush() == 0
    assert store.flush() == 0

    assert state.dirty
    [record] = error_records(caplog)  # logged once, not on every attempt
    assert "cannot save state" in record.getMessage()
    (tmp_path / "f").unlink()
    assert store.flush() == 1
    assert not state.dirty
    assert StateStore(tmp_path).node_state("f", "n")["count"] == 1


def test_failed_write_is_retried_after_the_interval_not_at_once(tmp_path: Path) -> None:
    clock = FakeClock()
    store = StateStore(tmp_path, min_interval_s=60, clock=clock)
    store.node_state("f", "n").set("count", 1)
    (tmp_path / "f").write_text("not a directory")

    assert store.flush_due() == 0

    assert store.next_due_in() == 60.0
    clock.now += 60
    (tmp_path / "f").unlink()
    assert store.flush_due() == 1


def test_ids_with_at_and_slash_map_to_distinct_files(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    ids = ["meter/l1", "meter__l1", "meter%2Fl1", "shelly@10.0.0.5:80", "..", ".", "a/../b"]
    for number, node_id in enumerate(ids):
        store.node_state("flow/a", node_id).set("number", number)
    store.node_state("flow__a", "meter/l1").set("number", -1)

    assert store.flush() == len(ids) + 1

    files = sorted(tmp_path.rglob("*.json"))
    assert len(files) == len(ids) + 1
    assert all(path.parent.parent == tmp_path for path in files)
    reloaded = StateStore(tmp_path)
    for number, node_id in enumerate(ids):
        assert reloaded.node_state("flow/a", node_id)["number"] == number
    assert reloaded.node_state("flow__a", "meter/l1")["number"] == -1


def test_in_memory_store_writes_nothing_and_flush_marks_clean(tmp_path: Path) -> None:
    store = StateStore(None)
    state = store.node_state("f", "n")
    state.set("count", 1)

    assert store.flush() == 0

    assert not state.dirty
    assert store.next_due_in() is None
    assert store.node_state("f", "n") is state


def test_discard_forgets_the_states_of_a_flow(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    state = store.node_state("f", "n")
    state.set("count", 1)
    store.flush("f")

    store.discard("f")

    assert store.node_state("f", "n") is not state
    assert store.node_state("f", "n")["count"] == 1


def read_counter(path: Path, seed: int) -> int:
    """The counter in the writer's file, after checking the file is whole."""
    state = json.loads(path.read_text(encoding="utf-8"))
    counter = state["counter"]
    assert isinstance(counter, int), f"seed {seed}"
    assert state["payload"] == f"{counter:010d}" * 2000, f"seed {seed}: torn file"
    return counter


def test_kill_9_while_writing_never_leaves_a_torn_or_older_file(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    path = tmp_path / "writer" / "counter.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    deadline = time.monotonic() + 10.0
    last = 0
    kills = 0
    while kills < 30 and time.monotonic() < deadline:
        writer = subprocess.Popen([sys.executable, str(WRITER), str(tmp_path)], cwd=REPO,
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            while time.monotonic() < deadline + 5.0:  # until this writer has saved once
                if writer.poll() is not None:
                    break
                if path.exists() and read_counter(path, seed) > last:
                    break
                time.sleep(0.001)
            time.sleep(rng.uniform(0.0, 0.020))
        finally:
            writer.send_signal(signal.SIGKILL)
            _, stderr = writer.communicate(timeout=5)
        assert writer.returncode == -signal.SIGKILL, stderr.decode(errors="replace")
        kills += 1

        counter = read_counter(path, seed)
        assert counter >= last, f"seed {seed}: counter went back from {last} to {counter}"
        last = counter

    assert kills >= 10, f"only {kills} kills in time"
    assert last > kills
    assert len(list(path.parent.iterdir())) <= 2  # the state and at most one temporary file
