"""When energy.switch switches: allowance, confirmed state, min on/off times (pure)."""

from __future__ import annotations

from nodes.energy.onoff import Decision, OnOffPolicy


def policy(**options: float) -> OnOffPolicy:
    settings = {"request_w": 2000.0, "min_on_s": 300.0, "min_off_s": 300.0,
                "repeat_s": 60.0, "now": 0.0, **options}
    return OnOffPolicy(**settings)


def test_nothing_happens_before_the_first_allowance() -> None:
    p = policy(min_off_s=0)
    assert p.decide(False, 10) == Decision(None, reason="waiting for the first allowance")
    assert p.decide(True, 10).command is None  # found on: left alone until told


def test_the_request_switches_on_once_min_off_since_the_start_is_over() -> None:
    p = policy()
    p.allowance(2000)
    waiting = p.decide(False, 100)
    assert waiting == Decision(None, 200, "waiting for the min off time to switch on")
    assert p.decide(False, 300) == Decision(True)


def test_an_allowance_between_zero_and_the_request_changes_nothing() -> None:
    p = policy(min_off_s=0, min_on_s=0)
    p.allowance(1999.9)
    assert p.target is None and p.decide(False, 1).command is None
    p.allowance(2500)
    p.sent(True, 1)
    p.allowance(1365.5)
    assert p.target is True
    assert p.decide(True, 2).command is None


def test_zero_switches_off_only_after_min_on_while_confirmed_on() -> None:
    p = policy(min_off_s=0)
    p.allowance(2000)
    p.sent(True, 10)
    p.allowance(0)
    assert p.decide(True, 100) == Decision(None, 210, "waiting for the min on time to "
                                                      "switch off")
    assert p.decide(True, 310) == Decision(False)


def test_an_unconfirmed_switch_on_is_switched_off_at_once() -> None:
    """Commanded on, the device never said so (unknown or off): off does not wait."""
    p = policy(min_off_s=0)
    p.allowance(2000)
    p.sent(True, 10)
    p.allowance(0)
    assert p.decide(None, 11) == Decision(False)
    assert p.decide(False, 11) == Decision(False)


def test_a_forced_off_ignores_min_on_until_the_next_allowance() -> None:
    p = policy(min_off_s=0)
    p.allowance(2000)
    p.sent(True, 10)
    p.force_off()
    assert p.decide(True, 11) == Decision(False)
    p.sent(False, 11)
    p.allowance(2000)
    assert p.decide(False, 12) == Decision(True)  # min_off_s 0


def test_a_device_that_does_not_follow_gets_the_command_again_every_repeat_s() -> None:
    p = policy(min_off_s=0)
    p.allowance(2000)
    p.sent(True, 10)
    assert p.decide(False, 20) == Decision(None, 50, "switched on, not confirmed yet")
    assert p.decide(False, 70) == Decision(True)
    p.sent(True, 70)
    assert p.changed_at == 10  # a repeat is no change: min on counts from the first


def test_a_device_switched_on_by_hand_is_switched_off_when_the_allowance_is_zero() -> None:
    p = policy(min_off_s=0)
    p.allowance(0)
    p.sent(False, 5)
    assert p.decide(True, 6).command is None  # sent just now: repeated after 60 s
    assert p.decide(True, 65) == Decision(False)


def test_unknown_counts_as_off() -> None:
    p = policy(min_off_s=0)
    p.allowance(2000)
    assert p.decide(None, 1) == Decision(True)
    p.allowance(0)
    assert p.decide(None, 1).command is None  # never commanded on: nothing to switch off
