"""flowengine.jsontext.load_json: a payload that is one number takes a short way that
must give exactly what the parser gives (value, type, refusal), and what the parser
refuses stays refused."""

from __future__ import annotations

import json
import math

import pytest

from flowengine.jsontext import MAX_DEPTH, JsonTextError, JsonTooDeep, load_json
from nodes.mqtt.out import encode_value

NUMBERS = [b"0", b"-0", b"12", b"-12", b"0.5", b"-0.5", b"1e3", b"1E-2", b"2e+2", b"-12.50",
           b" 7 ", b"\n7\r\n", b"\t3.25", b"18446744073709551615", b"-18446744073709551615",
           b"1.7976931348623157e308", b"5e-324", b"123.456e-7"]
NOT_JSON = [b"01", b"1.", b".5", b"+1", b"1_0", b"0x10", b"1e", b"--1", b"1 2", b"", b" ",
            b"Infinity", b"-Infinity", b"NaN", b"nan", b"inf"]
OUT_OF_RANGE = [b"1e400", b"-1e400", b"18446744073709551616", b"123456789012345678901234"]


@pytest.mark.parametrize("text", NUMBERS)
def test_a_number_is_what_the_parser_makes_of_it(text: bytes) -> None:
    got, expected = load_json(text), json.loads(text)
    assert got == expected and type(got) is type(expected)
    from_text = load_json(text.decode())  # a payload decoded to str first (mqtt.in)
    assert from_text == expected and type(from_text) is type(expected)


@pytest.mark.parametrize("text", NOT_JSON + OUT_OF_RANGE)
def test_what_is_not_a_sane_number_is_refused(text: bytes) -> None:
    with pytest.raises(JsonTextError):
        load_json(text)
    with pytest.raises(JsonTextError):
        load_json(text.decode())


@pytest.mark.parametrize("text", ["\u0661\u0662", "\uff11", "1\u00a0"])
def test_digits_and_blanks_outside_ascii_are_not_json_numbers(text: str) -> None:
    with pytest.raises(JsonTextError):
        load_json(text)


def test_the_refusal_names_the_number_without_its_blanks() -> None:
    with pytest.raises(JsonTextError, match=r"^1e400 is out of range$"):
        load_json(b" 1e400 ")
    with pytest.raises(JsonTextError, match=r"^1e400 is out of range$"):
        load_json(" 1e400 ")
    with pytest.raises(JsonTextError, match="an integer of 24 digits"):
        load_json(b"123456789012345678901234")


def test_documents_still_go_through_the_parser() -> None:
    assert load_json(b'{"a": [1, 2.5, null, true]}') == {"a": [1, 2.5, None, True]}
    assert load_json(b'"12"') == "12"
    with pytest.raises(JsonTooDeep):
        load_json(b"[" * 40 + b"]" * 40)


@pytest.mark.parametrize("value", [0, -7, 1 << 63, 0.1, -2.5, 1e300, 5e-324, 1e16, 123.0,
                                   True, False, None, math.nan, math.inf, [1, 2.0],
                                   {"a": "ü"}])
def test_mqtt_out_writes_numbers_as_json_does(value: object) -> None:
    assert encode_value(value) == json.dumps(value, ensure_ascii=False,  # type: ignore[arg-type]
                                             separators=(",", ":"))


def test_depth_is_checked_only_where_the_brackets_allow_it_and_then_exactly() -> None:
    """More than MAX_DEPTH brackets, in texts or side by side, is no deep document; one
    level beyond MAX_DEPTH is refused, as str and as bytes."""
    shallow = json.dumps({"text": "[{" * 40, "list": [[1]] * 40})
    assert load_json(shallow) == load_json(shallow.encode()) == json.loads(shallow)
    deepest = "[" * MAX_DEPTH + "1" + "]" * MAX_DEPTH
    assert load_json(deepest) == load_json(deepest.encode()) == json.loads(deepest)
    too_deep = "[" + deepest + "]"
    for text in (too_deep, too_deep.encode(), '{"a": "[[[", "b": ' + too_deep + "}"):
        with pytest.raises(JsonTooDeep, match=f"nested deeper than {MAX_DEPTH}"):
            load_json(text)


@pytest.mark.parametrize("text", [b'\xef\xbb\xbf{"a": 1}', '{"a": [1]}'.encode("utf-16"),
                                  '{"a": "\u00fc"}'.encode("utf-16-le"),
                                  '["\u00fc"]'.encode("utf-32")])
def test_bytes_are_read_in_the_encoding_json_detects(text: bytes) -> None:
    assert load_json(text) == json.loads(text)


def test_a_str_with_a_byte_order_mark_is_refused_as_json_refuses_it() -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads('\ufeff{"a": 1}')
    with pytest.raises(JsonTextError, match="Unexpected UTF-8 BOM"):
        load_json('\ufeff{"a": 1}')
