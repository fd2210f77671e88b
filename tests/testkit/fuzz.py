"""Seeded fuzzing of everything that enters the program from outside: flow and site files
(through `esess-flowctl validate`) and device and broker payloads (through their
decoders). Used by tests/faults/test_fuzz.py (a few hundred cases) and bench/fuzz.py
(as many as asked).

A file case mutates a shipped flow, an example, a docs example or a site file that uses
the shipped flows: byte flips, deletions, duplicated or swapped lines, wrong indentation,
invalid UTF-8, scalars replaced by extreme values (huge texts, deep nesting, alias
bombs, odd numbers, tags), type swaps. It passes when `validate` exits 0 or 1 (never
with a traceback), every error line starts with `file:line`, and it took under 5 s.

A payload case mutates a recorded device reply (or a broker payload) and feeds it to
`nodes.http.session.decode_json`, the Shelly mappings and pointers, and every
`mqtt.in` decoder. It passes when nothing but the documented decode failures
(`DeviceUnreachable`, `DecodeError`) escapes.

Every case is a pure function of (seed, index): a failure is reproduced with
`case_input(kind, seed, index)`.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import re
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CASE_LIMIT_S = 5.0
_ABORT_S = 20  # a case still running after this is stopped (and counted as too slow)

__all__ = ["CASE_LIMIT_S", "Report", "case_input", "file_seeds", "fuzz_files",
           "fuzz_payloads", "payload_seeds"]

# -- seeds ----------------------------------------------------------------------------

_SITE_TEMPLATE = """\
# yaml-language-server: $schema=../schemas/site.schema.json
state_dir: /tmp/esess-fuzz-state
log: {level: INFO}
connections:
  mqtt:
    main: {host: 127.0.0.1, port: 1883, username: esess, reconnect_max_ms: 5000}
observe: [mqtt.main]
flows:
  - use: shelly3em-grid
    instance: house
    vars: {host: 192.168.1.50, metering: net, poll_ms: 1000, vrm_instance: 40}
  - use: shellypm-inverter
    vars: {host: 192.168.1.51, phase: 2, position: 1, service_name: garage}
  - use: time-to-go
  - use: mqtt-temperature
    vars: {topic: "home/outdoor/+", service_name: outdoor}
  - use: mqtt-exporter
    instance: grid
    vars: {service: com.victronenergy.system, paths: [/Ac/Grid/L1/Power],
           topic: "es-ESS/Grid/*"}
  - file: heartbeat.yaml
    vars: {peak_w: 3000}
  - use: time-to-go
    instance: off
    enabled: false
"""


def file_seeds() -> list[tuple[str, bytes]]:
    """(file name, text) of every flow and site example the fuzzer starts from."""
    seeds: list[tuple[str, bytes]] = []
    for path in sorted([*(ROOT / "flows").glob("*.yaml"), *(ROOT / "examples").glob("*.yaml"),
                        ROOT / "install" / "site.example.yaml"]):
        seeds.append((path.name, path.read_bytes()))
    for doc in sorted((ROOT / "docs").rglob("*.md")):
        blocks = re.findall(r"```yaml\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
        for i, block in enumerate(blocks):
            seeds.append((f"{doc.stem}-{i}.yaml", block.encode()))
    seeds.append(("site.yaml", _SITE_TEMPLATE.encode()))
    return seeds


def payload_seeds() -> list[bytes]:
    """Recorded device replies, the simulators' broken ones, and broker payloads."""
    from sim.devices.faults import DEEP_BODY, GARBAGE_BODY

    samples = sorted((ROOT / "tests" / "integration" / "sim" / "samples").glob("*.json"))
    return [*(p.read_bytes() for p in samples), DEEP_BODY, GARBAGE_BODY,
            b"21.5", b"on", b'{"value": 21.5}', b'{"ENERGY": {"Power": [1, 2]}}', b"true", b""]


# -- mutations ------------------------------------------------------------------------

Mutation = Callable[[bytes, random.Random], bytes]

def _billion_laughs(rng: random.Random) -> str:
    levels = rng.randint(6, 12)
    lines = ['  - &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"  - &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n" + "\n".join(lines) + f"\n  - *l{levels - 1}"


YAML_EXTREMES: list[Callable[[random.Random], str]] = [
    lambda r: "x" * r.choice([1000, 100_000, 1_000_000]),
    lambda r: '"' + "\\u00e9" * r.choice([10, 50_000]) + '"',
    lambda r: "[" * r.choice([20, 500, 5000, 50_000]),
    lambda r: "[" * (n := r.choice([100, 400, 2000])) + "]" * n,
    lambda r: "{a: " * (n := r.choice([100, 1000])) + "1" + "}" * n,
    lambda r: "- " * r.choice([50, 500]) + "x",
    _billion_laughs,
    lambda r: "&a [*a]",
    lambda r: "*nowhere",
    lambda r: r.choice(["1e999", "-1e999", ".nan", ".inf", "-.inf", "0x7fffffffffffffffffff",
                        "9" * 5000, "-0", "1_000", "0o777", "1:30:00", "2026-13-45",
                        "2026-12-01T08:00:00Z", "1e-400", "-9" * 30]),
    lambda r: r.choice(["null", "~", "", "''", '""', "true", "no", "yes", "on", "off",
                        "[]", "{}", "[null]", "{null: null}", "{? [a]: b}", "? x"]),
    lambda r: r.choice(["!secret", "!secret nope", "!secret " + "s" * 3000,
                        "!!python/object:os.system", "!!binary aGVsbG8=", "!!set {a, b}",
                        "!!omap [a: 1]", "!unknown x",
                        "!!str", "!!int x", "!!float nan", "!!timestamp x"]),
    lambda r: r.choice(["${nope}", "${host", "${}", "${" + "x" * 500 + "}", "$${host}",
                        "${host}${host}" * 100, "${password}", "${ host }"]),
    lambda r: r.choice(["\t", "\x00", "\x1b[31m", "\u202e", "\ufeff", "\ud7ff", "💥" * 100,
                        "a\u0000b", "\\", "'", '"', "#", ": :", "- -", "|", ">", "%YAML 1.1",
                        "---", "...", "{{", "}}", "&", "*"]),
    lambda r: r.choice(["/dev/zero", "/proc/self/status", "/", ".", "..", "a\\x00b",
                        "../" * 40 + "etc/passwd", "flows/../../x", "~root/x", "C:\\x",
                        "http://example.com/flow.yaml", "heartbeat.yaml", "site.yaml"]),
    lambda r: r.choice(["com.victronenergy.grid.*", "/" * 300, "/Ac/L1/Power" * 100,
                        "http://" + "a" * 70_000, "a.b[0]" * 200, "(" * 300, "1/0",
                        "__import__('os')", "().__class__.__bases__[0].__subclasses__()",
                        "9**9**9**9", "'a' * 10**9", "[1] * 10**9", "lambda: 1"]),
]


def _scalar_spans(text: str) -> list[tuple[int, int]]:
    """Where the value of a `key: value` or `- value` line is."""
    return [m.span(1) for m in re.finditer(r"(?m)^[ \t-]*(?:[\w./${}-]+:[ \t]+|- )(\S[^\n]*)$",
                                           text)]


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _replace_scalar(data: bytes, rng: random.Random) -> bytes:
    text = data.decode("utf-8", errors="surrogateescape")
    spans = _scalar_spans(text)
    if not spans:
        return data
    start, end = rng.choice(spans)
    new = rng.choice(YAML_EXTREMES)(rng)
    return (text[:start] + new + text[end:]).encode("utf-8", errors="surrogateescape")


def _swap_type(data: bytes, rng: random.Random) -> bytes:
    text = data.decode("utf-8", errors="surrogateescape")
    spans = _scalar_spans(text)
    if not spans:
        return data
    start, end = rng.choice(spans)
    old = text[start:end]
    new = rng.choice([f"[{old}]", f"{{x: {old}}}", f"[[{old}]]", f"\n  - {old}",
                      f"\n  nested: {old}", f"'{old}'", f"{old}: {old}", "[" + old])
    return (text[:start] + new + text[end:]).encode("utf-8", errors="surrogateescape")


def _flip_byte(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return b"\xff"
    i = rng.randrange(len(data))
    return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:]


def _delete_bytes(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    return data[:i] + data[i + rng.randint(1, 40):]


def _insert_bytes(data: bytes, rng: random.Random) -> bytes:
    junk = rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\xef\xbb\xbf", b"\r",
                       b"\t", b"\x85", b"\xe2\x80\xa8", b"{", b"[", b":", b"&x ", b"*x",
                       b"!secret ", b"\x80\x80\x80"])
    i = rng.randrange(len(data) + 1)
    return data[:i] + junk + data[i:]


def _duplicate_line(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    i = rng.randrange(len(lines))
    lines.insert(i, lines[i])
    return b"\n".join(lines)


def _delete_line(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    del lines[rng.randrange(len(lines))]
    return b"\n".join(lines)


def _swap_lines(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


def _indent(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    i = rng.randrange(len(lines))
    line = lines[i]
    lines[i] = rng.choice([b" " + line, line.lstrip(), b"\t" + line, b"   " + line,
                           line[1:] if line.startswith(b" ") else b"  " + line])
    return b"\n".join(lines)


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[:rng.randrange(len(data) + 1)]


def _repeat_block(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    i = rng.randrange(len(lines))
    j = min(len(lines), i + rng.randint(1, 12))
    return b"\n".join([*lines[:j], *lines[i:j] * rng.choice([2, 3, 50]), *lines[j:]])


def _extreme_value(rng: random.Random, depth: int = 0) -> Any:
    """A random value of any JSON/YAML type, often at a limit."""
    pick = rng.randrange(14 if depth < 3 else 9)
    makers: list[Callable[[], Any]] = [
        lambda: None, lambda: rng.choice([True, False]),
        lambda: rng.choice([0, -1, 1, 2**31, -2**63, 2**64, 10**30, 7]),
        lambda: rng.choice([0.0, -0.0, 1e-320, 1.7976931348623157e308, 0.1, -5.5,
                            float("inf"), float("-inf"), float("nan")]),
        lambda: rng.choice(["", " ", "x" * rng.choice([1, 80, 5000, 200_000]), "${host}",
                            "/Ac/L1/Power", "com.victronenergy.grid", "192.168.1.50",
                            "http://x", "*", "\u2028", "{topic}", "{", "%s", "\\"]),
        lambda: rng.choice(["timer", "formula", "mqtt.out", "dbus.service", "shelly.meter",
                            "no.such.type", "Timer"]),
        lambda: rng.choice(["id", "type", "to", "nodes", "vars", "flows", "use", "file"]),
        lambda: [],
        lambda: {},
        lambda: [_extreme_value(rng, depth + 1) for _ in range(rng.randint(1, 4))],
        lambda: {rng.choice(["id", "type", "to", "x", "value", "default", "nodes"]):
                 _extreme_value(rng, depth + 1) for _ in range(rng.randint(1, 3))},
        lambda: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
        lambda: list(range(rng.choice([100, 5000]))),
        lambda: {f"k{i}": i for i in range(rng.choice([50, 3000]))},
    ]
    return makers[pick]()


def _paths(document: Any, limit: int = 3000) -> list[tuple[Any, ...]]:
    """Paths to the values of a document, breadth first, 12 levels and `limit` at most
    (an alias bomb loads as a small graph that would be a huge tree)."""
    found: list[tuple[Any, ...]] = []
    level: list[tuple[tuple[Any, ...], Any]] = [((), document)]
    for _ in range(12):
        inner: list[tuple[tuple[Any, ...], Any]] = []
        for path, value in level:
            found.append(path)
            if len(found) >= limit:
                return found
            items = value.items() if isinstance(value, dict) else \
                enumerate(value) if isinstance(value, list) else ()
            inner.extend(((*path, key), item) for key, item in items)
        level = inner
    return found


def _replaced(document: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(document, dict):
        return {**document, head: _replaced(document[head], rest, new)}
    copy = list(document)
    copy[head] = _replaced(copy[head], rest, new)
    return copy


def _replace_subtree(data: bytes, rng: random.Random) -> bytes:
    """Valid YAML again, with one value anywhere swapped for an odd one (so the case gets
    past the parser, into schemas, vars, the graph and the node constructors)."""
    import yaml

    try:
        document = yaml.safe_load(data)
    except Exception:  # PyYAML's own bugs too (`!!timestamp x`): then no structural change
        return data
    paths = [p for p in _paths(document) if p]
    if not paths:
        return data
    path = rng.choice(paths)
    changed = _replaced(document, path, _extreme_value(rng))
    try:
        return yaml.safe_dump(changed, allow_unicode=True, sort_keys=False).encode()
    except (yaml.YAMLError, ValueError, RecursionError):
        return data


FILE_MUTATIONS: list[Mutation] = [
    _replace_scalar, _replace_scalar, _replace_scalar, _swap_type, _flip_byte, _delete_bytes,
    _insert_bytes, _duplicate_line, _delete_line, _swap_lines, _indent, _truncate,
    _repeat_block, _replace_subtree, _replace_subtree, _replace_subtree, _replace_subtree]

JSON_EXTREMES = [b"1e308", b"-1e308", b"1e400", b"-0", b"NaN", b"-Infinity", b"9" * 30,
                 b"9" * 5000, b"18446744073709551616", b"1.7976931348623157e308", b"null",
                 b"true", b"\"\"", b"\"\\ud800\"", b"\"\\u0000\"", b"\"" + b"x" * 70_000 + b"\"",
                 b"[]", b"{}", b"[" * 31 + b"]" * 31, b"[" * 33 + b"]" * 33,
                 b"[" * 900 + b"]" * 900, b"[" * 5000, b"{\"a\":" * 2000, b"\"\xff\"",
                 b"[1,2,3]", b"{\"is_valid\": false}", b"-1", b"0.1e-400", b"1E5"]


def _replace_json_value(data: bytes, rng: random.Random) -> bytes:
    spans = [m.span() for m in re.finditer(rb'-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|"[^"\\]*"'
                                           rb"|true|false|null", data)]
    if not spans:
        return data
    start, end = rng.choice(spans)
    return data[:start] + rng.choice(JSON_EXTREMES) + data[end:]


def _replace_json_subtree(data: bytes, rng: random.Random) -> bytes:
    """The reply with one value anywhere swapped for an odd one, as JSON again (NaN and
    Infinity as Python writes them)."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return data
    paths = [p for p in _paths(document) if p] or [()]
    changed = _replaced(document, rng.choice(paths), _extreme_value(rng))
    try:
        return json.dumps(changed).encode()
    except (ValueError, RecursionError):
        return data


PAYLOAD_MUTATIONS: list[Mutation] = [
    _replace_json_subtree, _replace_json_subtree, _replace_json_subtree,
    _replace_json_value, _replace_json_value, _replace_json_value,
    _flip_byte, _delete_bytes, _insert_bytes, _truncate,
    lambda d, r: r.choice(JSON_EXTREMES),
    lambda d, r: d + d,
    lambda d, r: b"[" + d + b"]" * r.randint(0, 2)]


def _mutate(data: bytes, rng: random.Random, mutations: list[Mutation]) -> bytes:
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        data = rng.choice(mutations)(data, rng)
    return data


def case_input(kind: str, seed: int, index: int) -> tuple[str, bytes]:
    """The (file name, bytes) of one case: `kind` is "file" or "payload"."""
    rng = random.Random(f"{kind}:{seed}:{index}")
    if kind == "file":
        name, text = rng.choice(file_seeds())
        return name, _mutate(text, rng, FILE_MUTATIONS)
    return "payload", _mutate(rng.choice(payload_seeds()), rng, PAYLOAD_MUTATIONS)


# -- running cases --------------------------------------------------------------------

@dataclass
class Report:
    """What a fuzz run found; `failures` holds one line per failed case."""

    kind: str
    cases: int = 0
    accepted: int = 0
    rejected: int = 0
    max_s: float = 0.0
    slowest: str = ""
    failures: list[str] = field(default_factory=list)

    def add_time(self, seconds: float, what: str) -> None:
        if seconds > self.max_s:
            self.max_s, self.slowest = seconds, what
        if seconds > CASE_LIMIT_S:
            self.failures.append(f"{what}: took {seconds:.1f} s")

    def groups(self) -> dict[str, list[str]]:
        """The failures by what went wrong (the last traceback line, or the problem with
        numbers and quoted text blanked), each with the cases that show it."""
        found: dict[str, list[str]] = {}
        for failure in self.failures:
            case, _, problem = failure.partition(": ")
            last = problem.rstrip().splitlines()[-1] if problem.strip() else problem
            key = re.sub(r"\d+", "N", re.sub(r"'.*", "'…'", last))[:160]
            found.setdefault(key, []).append(case.split(" from ")[0])
        return found

    def summary(self) -> str:
        return (f"{self.kind}: {self.cases} cases, {self.accepted} accepted, "
                f"{self.rejected} rejected, max {self.max_s:.2f} s ({self.slowest}), "
                f"{len(self.failures)} failed")


class _CaseAborted(BaseException):
    """Raised by the alarm in a case that ran too long."""


@contextlib.contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    def abort(signum: int, frame: FrameType | None) -> None:
        raise _CaseAborted

    previous = signal.signal(signal.SIGALRM, abort)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


_ERROR_LINE = re.compile(r"^[^\s:][^:]*:\d+(?::\d+)?: ")
_COUNT_LINE = re.compile(r"^\d+ error\(s\)$")


def check_validate(code: object, err: str) -> str | None:
    """What is wrong with one `validate` outcome, or None."""
    if code not in (0, 1):
        return f"exit code {code!r}"
    if code == 1:
        lines = err.rstrip("\n").split("\n")
        if not lines or not _COUNT_LINE.match(lines[-1]):
            return f"no error count at the end: {err[-300:]!r}"
        for line in lines[:-1]:
            if not _ERROR_LINE.match(line):
                return f"an error without file:line: {line[:300]!r}"
    return None


def validate_in_process(path: Path) -> tuple[object, str, str]:
    """`esess-flowctl validate path` in this process: (exit code, stdout, stderr)."""
    from flowengine.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: object = main(["validate", str(path)])
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def fuzz_files(directory: Path, *, seed: int, cases: int, start: int = 0) -> Report:
    """Mutated flow and site files through `validate`, in this process."""
    report = Report("files")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "heartbeat.yaml").write_bytes((ROOT / "examples" / "heartbeat.yaml")
                                               .read_bytes())  # what the site file names
    for index in range(start, start + cases):
        name, data = case_input("file", seed, index)
        what = f"case_input('file', {seed}, {index}) from {name}"
        path = directory / f"case-{index}-{name}"
        path.write_bytes(data)
        report.cases += 1
        began = time.perf_counter()
        try:
            with _deadline(_ABORT_S):
                code, _, err = validate_in_process(path)
        except _CaseAborted:
            report.failures.append(f"{what}: still running after {_ABORT_S} s")
            continue
        except Exception:  # the finding: anything escaping validate
            report.failures.append(f"{what}: {traceback.format_exc(limit=-3)}")
            continue
        finally:
            report.add_time(time.perf_counter() - began, what)
            path.unlink()
        problem = check_validate(code, err)
        if problem is not None:
            report.failures.append(f"{what}: {problem}")
        elif code == 0:
            report.accepted += 1
        else:
            report.rejected += 1
    return report


# -- payloads -------------------------------------------------------------------------

_POINTERS = ["", "/total_power", "/emeters/0/power", "/emeters/01", "/emeters/²",
             "/emeters/" + "9" * 40, "/a~1b/~0", "/", "//", "/-"]


def _decode_device_reply(data: bytes) -> bool:
    """True when the reply decoded; raises anything but the documented failures."""
    from nodes.devices.shelly import MODELS, detect_model
    from nodes.http.poll import _present, resolve_pointer
    from nodes.http.session import DeviceUnreachable, decode_json

    try:
        document = decode_json(data)
    except DeviceUnreachable:
        return False
    for pointer in _POINTERS:
        resolve_pointer(document, pointer)
        _present(document, pointer)
    with contextlib.suppress(DeviceUnreachable):
        detect_model(document)
    for mapping in MODELS.values():
        for channel in (0, 1, 5):
            values = mapping.values([document] * len(mapping.calls(channel)), channel)
            for topic, value in values.items():
                if isinstance(value, float) and value != value:  # NaN
                    raise AssertionError(f"{topic} is NaN")
                json.dumps(value, allow_nan=False)  # what goes on (D-Bus, MQTT) is JSON
    return True


_MQTT_DECODERS: list[tuple[str, str | None, str | None]] = [
    ("auto", None, None), ("number", None, None), ("boolean", None, None),
    ("json", None, None), ("string", None, None), ("auto", "/emeters/0/power", None),
    ("number", "ENERGY.Power", None), ("number", "emeters[0].power", None),
    ("boolean", "/ison", None), ("json", "/a/0/b", None),
    ("number", None, r'"apower":([^,]+),'), ("boolean", None, r'"ison":\s*true'),
    ("auto", "/value", r"(\d+)"),
]


def _decode_broker_payload(data: bytes) -> int:
    """How many mqtt.in decoders took it; raises anything but DecodeError."""
    from nodes.mqtt.in_ import DecodeError, make_decoder

    took = 0
    for payload, path, regex in _MQTT_DECODERS:
        try:
            make_decoder(payload, path, regex)(data)
        except DecodeError:
            continue
        took += 1
    return took


def fuzz_payloads(*, seed: int, cases: int, start: int = 0) -> Report:
    """Mutated device replies and broker payloads through every decoder, in this process."""
    report = Report("payloads")
    for index in range(start, start + cases):
        _, data = case_input("payload", seed, index)
        what = f"case_input('payload', {seed}, {index})"
        report.cases += 1
        began = time.perf_counter()
        try:
            with _deadline(_ABORT_S):
                decoded = _decode_device_reply(data)
                _decode_broker_payload(data)
        except _CaseAborted:
            report.failures.append(f"{what}: still running after {_ABORT_S} s")
            continue
        except Exception:  # the finding: anything but the documented decode failures
            report.failures.append(f"{what}: {traceback.format_exc(limit=-3)}")
            continue
        finally:
            report.add_time(time.perf_counter() - began, what)
        if decoded:  # by the device decoder (a broker decoder of plain text takes anything)
            report.accepted += 1
        else:
            report.rejected += 1
    return report


def describe(value: Any, limit: int = 200) -> str:
    """A short repr of a case's input, for a report."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"
