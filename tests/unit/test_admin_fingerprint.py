"""A flow's fingerprint: what decides `unchanged` or `restarted` in a deploy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flowengine.admin.deploy import fingerprint
from flowengine.loader import Secrets, load_flow
from flowengine.model import FlowSpec, Secret

FLOW = """\
id: tick
vars:
  every: {type: integer, default: 1000}
  word: {type: secret}
nodes:
  - {id: t, type: timer, interval_ms: "${every}", value: "${word}", to: [show]}
  - {id: show, type: log}
"""


def _spec(write: Callable[..., Path], text: str = FLOW, **values: object) -> FlowSpec:
    file = write("tick.yaml", text)
    return load_flow(file, values={"word": Secret("pw", "a"), **values},
                     secrets=Secrets(environ={}))


def test_the_same_file_read_twice_has_the_same_fingerprint(write: Callable[..., Path]) -> None:
    assert fingerprint(_spec(write)) == fingerprint(_spec(write))


def test_a_var_value_changes_the_fingerprint(write: Callable[..., Path]) -> None:
    assert fingerprint(_spec(write)) != fingerprint(_spec(write, every=2000))


def test_a_default_given_as_a_value_is_the_same_plan(write: Callable[..., Path]) -> None:
    assert fingerprint(_spec(write)) == fingerprint(_spec(write, every=1000))


def test_a_wire_changes_the_fingerprint(write: Callable[..., Path]) -> None:
    unwired = FLOW.replace(", to: [show]", "")
    assert fingerprint(_spec(write)) != fingerprint(_spec(write, unwired))


def test_a_comment_or_the_order_of_keys_does_not(write: Callable[..., Path]) -> None:
    moved = FLOW.replace('  - {id: t, type: timer, interval_ms: "${every}", value: "${word}",',
                         '  # the clock\n  - {type: timer, id: t, value: "${word}", '
                         'interval_ms: "${every}",')
    assert fingerprint(_spec(write)) == fingerprint(_spec(write, moved))


def test_a_secret_counts_by_its_value(write: Callable[..., Path]) -> None:
    spec = _spec(write)
    assert isinstance(spec.vars["word"], Secret)
    assert fingerprint(spec) != fingerprint(_spec(write, word=Secret("pw", "b")))
