"""The distributor's request protocol: topics, field parsing, one consumer's state, and
the D-Bus name part made from a key."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodes.energy.allocation import ConsumerRequest
from nodes.energy.requests import (
    MAX_UNKNOWN,
    PUBLISHED,
    ROOT,
    Consumer,
    RequestError,
    UnknownName,
    bus_name_part,
    parse_value,
    split_topic,
)

# --- split_topic -------------------------------------------------------------------


def test_split_topic_gives_key_and_name() -> None:
    assert split_topic(f"{ROOT}/Requests/Pool heater/Request") == ("Pool heater", "Request")


@pytest.mark.parametrize("topic", [
    f"{ROOT}/Requests/pool",  # the original's per-cycle timestamp topic
    f"{ROOT}/Requests/pool/",
    f"{ROOT}/Requests//Request",
    f"{ROOT}/Requests/pool/Energy/energyToday",  # too deep
    f"{ROOT}/Requests/",
    f"{ROOT}/Requests",
    f"{ROOT}/Calculations/OverheadAvailable",
    f"other/{ROOT}/Requests/pool/Request",
    "es-ESS/solaroverheaddistributor/Requests/pool/Request",  # topics are case sensitive
    f"{ROOT}/requests/pool/Request",
    f"{ROOT}/Requests/+/Request",
    f"{ROOT}/Requests/pool/#",
    "",
])
def test_split_topic_refuses_other_shapes(topic: str) -> None:
    assert split_topic(topic) is None


def test_split_topic_takes_another_root() -> None:
    assert split_topic("site/dist/Requests/ev/Priority", root="site/dist") == ("ev", "Priority")
    assert split_topic(f"{ROOT}/Requests/ev/Priority", root="site/dist") is None


# --- parse_value ----------------------------------------------------------------------

BOOLEANS = ["IsAutomatic", "IgnoreBatReservation", "IsScriptedConsumer", "IsHttpConsumer",
            "IsMqttConsumer"]
WATTS = ["Consumption", "Request", "StepSize", "Minimum"]
NPC_TEXTS = ["OnUrl", "OffUrl", "StatusUrl", "PowerUrl", "OnTopic", "OnValue", "OffTopic",
             "OffValue", "StatusTopic", "PowerTopic", "OnKeywordRegex", "IsOnKeywordRegex",
             "PowerExtractRegex"]


@pytest.mark.parametrize("name", BOOLEANS)
@pytest.mark.parametrize(("payload", "value"), [
    ("true", True), ("TRUE", True), ("True", True), (" true\n", True), ("1", True),
    ("false", False), ("False", False), ("0", False),
])
def test_booleans_read_true_false_one_zero(name: str, payload: str, value: bool) -> None:
    assert parse_value(name, payload) is value


@pytest.mark.parametrize("name", BOOLEANS)
@pytest.mark.parametrize("payload", ["yes", "on", "2", "1.0", "tru", "", "truefalse"])
def test_booleans_refuse_anything_else(name: str, payload: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_value(name, payload)
    assert str(caught.value) == f"{name}: {payload!r} is not true or false (nor 1 or 0)"


@pytest.mark.parametrize("name", WATTS)
@pytest.mark.parametrize(("payload", "value"), [
    ("0", 0.0), ("750", 750.0), ("750.5", 750.5), (" 2200.0 ", 2200.0), ("1e3", 1000.0),
    (".5", 0.5), ("5.", 5.0), ("+12", 12.0), ("-0", 0.0), ("1000000", 1e6),
])
def test_watts_read_numbers(name: str, payload: str, value: float) -> None:
    parsed = parse_value(name, payload)
    assert isinstance(parsed, float)
    assert parsed == value


def test_minus_zero_is_plain_zero() -> None:
    assert str(parse_value("Request", "-0")) == "0.0"


@pytest.mark.parametrize("name", WATTS)
@pytest.mark.parametrize(("payload", "expected"), [
    ("-5", "must be ≥ 0"),
    ("1000000.5", "must be ≤ 1000000 W"),
    ("2e6", "must be ≤ 1000000 W"),
    ("nan", "is not a finite number"),
    ("-inf", "is not a finite number"),
    ("Infinity", "is not a finite number"),
    ("1e400", "is not a finite number"),
    ("abc", "is not a number"),
    ("1_000", "is not a number"),
    ("1,5", "is not a number"),
    ("١٢", "is not a number"),  # float() reads Arabic-Indic digits; a request does not
    ("true", "is not a number"),
    ("", "is not a number"),
])
def test_watts_refuse_what_is_no_power(name: str, payload: str, expected: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_value(name, payload)
    assert str(caught.value) == f"{name}: {payload!r} {expected}"


def test_priority_shift_is_any_finite_number_at_least_zero() -> None:
    assert parse_value("PriorityShift", "0") == 0.0
    assert parse_value("PriorityShift", "2.5") == 2.5
    assert parse_value("PriorityShift", "5000000") == 5e6
    for payload, expected in [("-1", "must be ≥ 0"), ("nan", "is not a finite number"),
                              ("x", "is not a number")]:
        with pytest.raises(RequestError, match=re.escape(expected)):
            parse_value("PriorityShift", payload)


@pytest.mark.parametrize(("payload", "value"), [
    ("35", 35), ("35.0", 35), (" 35 ", 35), ("0", 0), ("1e2", 100), ("1000000", 1_000_000),
])
def test_priority_is_a_whole_number(payload: str, value: int) -> None:
    parsed = parse_value("Priority", payload)
    assert type(parsed) is int
    assert parsed == value


@pytest.mark.parametrize(("payload", "expected"), [
    ("35.5", "'35.5' is not a whole number"),
    ("true", "'true' is not a whole number"),
    ("nan", "'nan' is not a whole number"),
    ("inf", "'inf' is not a whole number"),
    ("", "'' is not a whole number"),
    ("-1", "'-1' must be between 0 and 1000000"),
    ("1000001", "'1000001' must be between 0 and 1000000"),
])
def test_priority_refuses_fractions_and_out_of_range(payload: str, expected: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_value("Priority", payload)
    assert str(caught.value) == f"Priority: {expected}"


def test_vrm_instance_is_a_whole_number_up_to_65535() -> None:
    assert parse_value("VRMInstanceID", "0") == 0
    assert parse_value("VRMInstanceID", "65535") == 65535
    assert parse_value("VRMInstanceID", "140.0") == 140
    for payload in ("65536", "-1", "1.5", "x"):
        with pytest.raises(RequestError, match=r"^VRMInstanceID: "):
            parse_value("VRMInstanceID", payload)


@pytest.mark.parametrize(("payload", "value"), [
    ("Pool heater", "Pool heater"),
    ("  Pool heater \n", "Pool heater"),
    ("Pool\nheater", "Pool heater"),
    ("Pool\t\t heater", "Pool heater"),
    ("Pool\x00\x07heater\x1b", "Poolheater"),
    ("Küche ☼", "Küche ☼"),
    ("", ""),
])
def test_custom_name_is_one_clean_line(payload: str, value: str) -> None:
    assert parse_value("CustomName", payload) == value


def test_custom_name_is_cut_to_100_characters() -> None:
    parsed = parse_value("CustomName", "x" * 300)
    assert parsed == "x" * 100


@pytest.mark.parametrize("name", NPC_TEXTS)
def test_npc_names_are_accepted_as_text(name: str) -> None:
    assert parse_value(name, " http://10.0.0.5/relay/0?turn=on ") == (
        "http://10.0.0.5/relay/0?turn=on")


@pytest.mark.parametrize("name", ["IsAutomatic", "Request", "Priority", "CustomName", "OnUrl"])
def test_a_payload_over_1000_characters_is_refused(name: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_value(name, "1" * 1001)
    text = str(caught.value)
    assert text.startswith(f"{name}: '1111")
    assert text.endswith("(1001 characters) is longer than 1000 characters")
    assert len(text) < 200
    assert not isinstance(caught.value, UnknownName)
    parse_value("OnUrl", "u" * 1000)  # 1000 is still fine


def test_an_unknown_name_suggests_the_close_one() -> None:
    with pytest.raises(UnknownName) as caught:
        parse_value("Prority", "35")
    assert str(caught.value) == "Prority: '35' under an unknown name; did you mean 'Priority'?"
    assert isinstance(caught.value, RequestError)
    assert isinstance(caught.value, ValueError)


def test_names_are_case_sensitive() -> None:
    with pytest.raises(UnknownName, match="did you mean 'Request'"):
        parse_value("request", "100")


def test_an_unknown_name_without_a_close_one() -> None:
    with pytest.raises(UnknownName) as caught:
        parse_value("Wattage", "3")
    assert str(caught.value) == "Wattage: '3' under an unknown name; not an es-ESS request name"


def test_a_long_payload_or_name_is_cut_in_the_message() -> None:
    with pytest.raises(RequestError) as caught:
        parse_value("Request", "9" * 900)
    assert len(str(caught.value)) < 200
    with pytest.raises(UnknownName) as unknown:
        parse_value("N" * 5000, "1")
    assert len(str(unknown.value)) < 300


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_the_distributors_own_names_are_not_read(name: str) -> None:
    with pytest.raises(UnknownName, match="published by the distributor"):
        parse_value(name, "100")


# --- Consumer -----------------------------------------------------------------------


def consumer(**values: str) -> Consumer:
    c = Consumer("pool", 10.0, 10.0)
    for name, payload in values.items():
        c.update(name, payload, 11.0)
    return c


def test_update_reports_a_change_only_when_the_value_changes() -> None:
    c = Consumer("pool", 10.0, 10.0)
    assert c.update("Request", "750", 11.0) is True
    assert c.update("Request", " 750.0 ", 12.0) is False
    assert c.last_seen == 12.0
    assert c.update("Request", "800", 13.0) is True
    assert c.values == {"Request": 800.0}
    assert c.first_seen == 10.0


def test_a_malformed_value_drops_the_good_one_until_it_is_fixed() -> None:
    c = consumer(Request="750")
    assert c.update("Request", "-5", 12.0) is True
    assert "Request" not in c.values
    assert c.errors == {"Request": "Request: '-5' must be ≥ 0"}
    assert c.malformed == "Request: '-5' must be ≥ 0"
    assert c.request().request == 0.0
    assert c.update("Request", "-5", 13.0) is False  # the same error again: no change
    assert c.update("Request", "-6", 14.0) is True  # another error text
    assert c.update("Request", "750", 15.0) is True
    assert c.errors == {}
    assert c.malformed is None
    assert c.values == {"Request": 750.0}


def test_malformed_lists_every_bad_field_in_protocol_order() -> None:
    c = consumer(Priority="35.5", Request="-5", IsAutomatic="yes")
    assert c.malformed == ("IsAutomatic: 'yes' is not true or false (nor 1 or 0); "
                           "Request: '-5' must be ≥ 0; Priority: '35.5' is not a whole number")


def test_an_unknown_name_is_reported_but_does_not_make_the_consumer_malformed() -> None:
    c = Consumer("pool", 10.0, 10.0)
    assert c.update("Prority", "35", 11.0) is True
    assert c.update("Prority", "35", 12.0) is False
    assert "Prority" in c.errors
    assert "Prority" not in c.values
    assert c.malformed is None


def test_unknown_names_are_kept_up_to_a_limit() -> None:
    c = Consumer("pool", 10.0, 10.0)
    for i in range(MAX_UNKNOWN + 10):
        c.update(f"Junk{i}", "1", 11.0)
    assert len(c.errors) == MAX_UNKNOWN
    assert c.update("Request", "-1", 12.0) is True  # protocol errors are always kept
    assert c.malformed == "Request: '-1' must be ≥ 0"


def test_the_distributors_own_names_are_ignored_by_update() -> None:
    c = Consumer("pool", 10.0, 10.0)
    assert c.update("Allowance", "1380.0", 11.0) is False
    assert c.update("Explanation", "granted 1380 W", 11.0) is False
    assert c.values == {} and c.errors == {}
    assert c.last_seen == 10.0  # our own echo says nothing about the consumer


def test_an_empty_payload_clears_the_field() -> None:
    c = consumer(Request="750", Priority="x")
    assert c.update("Request", "", 12.0) is True
    assert c.update("Priority", "  ", 12.0) is True
    assert c.values == {} and c.errors == {}
    assert c.update("Request", "", 13.0) is False
    assert c.last_seen == 13.0


def test_kind() -> None:
    assert consumer().kind == "scripted"
    assert consumer(IsScriptedConsumer="false").kind == "scripted"
    assert consumer(IsHttpConsumer="true").kind == "http"
    assert consumer(IsMqttConsumer="true").kind == "mqtt"
    assert consumer(IsHttpConsumer="false", IsMqttConsumer="true").kind == "mqtt"
    assert consumer(IsHttpConsumer="true", IsScriptedConsumer="true").kind == "scripted"
    assert consumer(IsHttpConsumer="maybe").kind == "scripted"


def test_request_defaults() -> None:
    assert consumer().request() == ConsumerRequest(
        key="pool", is_automatic=False, consumption=0.0, request=0.0, step_size=0.0,
        minimum=0.0, priority=100.0, priority_shift=0.0, ignore_bat_reservation=False)


def test_request_from_published_values() -> None:
    c = consumer(IsAutomatic="true", Consumption="400", Request="2200", StepSize="100",
                 Minimum="1365", Priority="35", PriorityShift="1", IgnoreBatReservation="1",
                 CustomName="EV", OnUrl="http://x")
    assert c.request() == ConsumerRequest(
        key="pool", is_automatic=True, consumption=400.0, request=2200.0, step_size=100.0,
        minimum=1365.0, priority=35.0, priority_shift=1.0, ignore_bat_reservation=True)


def test_custom_name_and_vrm_instance() -> None:
    assert consumer().custom_name == "Solar Overhead Consumer"
    assert consumer(CustomName=" \n").custom_name == "Solar Overhead Consumer"
    assert consumer(CustomName="Pool heater").custom_name == "Pool heater"
    assert consumer().vrm_instance is None
    assert consumer(VRMInstanceID="1001").vrm_instance == 1001
    assert consumer(VRMInstanceID="70000").vrm_instance is None


@pytest.mark.parametrize(("values", "name"), [
    ({"CustomName": "Pool heater", "IsAutomatic": "true", "Request": "750"},
     "Pool heater ☼ @ 750W"),
    ({"CustomName": "Pool heater", "IsAutomatic": "true", "Request": "2200.0"},
     "Pool heater ☼ @ 2200W"),
    ({"CustomName": "Pool heater", "IsAutomatic": "true", "Request": "750.5"},
     "Pool heater ☼ @ 750.5W"),
    ({"CustomName": "Pool heater", "IsAutomatic": "true"}, "Pool heater ☼ @ 0W"),
    ({"CustomName": "Pool heater", "IsAutomatic": "false", "Request": "750"}, "Pool heater ◌"),
    ({}, "Solar Overhead Consumer ◌"),
])
def test_bms_name(values: dict[str, str], name: str) -> None:
    assert consumer(**values).bms_name() == name


@pytest.mark.parametrize(("values", "soc"), [
    ({"Consumption": "375", "Request": "750"}, 50.0),
    ({"Consumption": "900", "Request": "750"}, 100.0),
    ({"Consumption": "375", "Request": "0"}, 0.0),
    ({"Consumption": "375"}, 0.0),
    ({"Request": "750"}, 0.0),
])
def test_bms_soc_is_consumption_share_of_request_clamped(values: dict[str, str],
                                                          soc: float) -> None:
    assert consumer(**values).bms_soc() == soc


# --- bus_name_part ------------------------------------------------------------------

BUS_PART = re.compile(r"[A-Za-z0-9_]+")


@pytest.mark.parametrize(("key", "part"), [
    ("Wattpilot", "Wattpilot"),
    ("Pool heater", "Pool_20heater"),
    ("Küche", "K_C3_BCche"),
    ("my_pool", "my__pool"),
    ("ev.1", "ev_2E1"),
    ("☼", "_E2_98_BC"),
    ("", "_"),
])
def test_bus_name_part_examples(key: str, part: str) -> None:
    assert bus_name_part(key) == part


def test_bus_name_part_keeps_space_and_escape_apart() -> None:
    assert bus_name_part("a b") != bus_name_part("a_20b")


def test_a_long_key_is_cut_and_hashed() -> None:
    part = bus_name_part("ä" * 60)  # 360 characters escaped
    assert len(part) == 89
    assert part.startswith(("_C3_A4" * 14)[:80] + "_")
    assert re.fullmatch(r"[0-9a-f]{8}", part[-8:])
    assert bus_name_part("ä" * 60) == part
    assert bus_name_part("ä" * 61) != part
    assert len(bus_name_part("x" * 100)) == 100  # 100 characters are kept as they are
    assert len(bus_name_part("x" * 101)) == 89


@given(st.text(max_size=300))
def test_bus_name_part_is_always_a_valid_name_part(key: str) -> None:
    part = bus_name_part(key)
    assert BUS_PART.fullmatch(part)
    assert len(part) <= 120
    assert bus_name_part(key) == part


@given(st.text(max_size=100), st.text(max_size=100))
def test_distinct_keys_give_distinct_name_parts(a: str, b: str) -> None:
    if a != b:
        assert bus_name_part(a) != bus_name_part(b)


@given(st.lists(st.text(alphabet="a_ 20ä.", max_size=12), unique=True, max_size=30))
def test_distinct_keys_from_a_confusable_alphabet_stay_distinct(keys: list[str]) -> None:
    assert len({bus_name_part(k) for k in keys}) == len(keys)
