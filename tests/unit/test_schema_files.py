"""The checked-in schemas/ work from disk in a standard validator: check-jsonschema, run as
a user runs it (a subprocess, offline), passes every shipped and example flow, every
flow, site and node example in docs/ and the example site file, and still finds errors.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from flowengine.yamlsrc import read_yaml_text

SCHEMAS = ROOT / "schemas"
CHECK = Path(sys.executable).parent / "check-jsonschema"
FLOWS = sorted([*(ROOT / "flows").glob("*.yaml"), *(ROOT / "examples").glob("*.yaml")])
DOCS = sorted((ROOT / "docs").rglob("*.md"))
# no network: a proxy that refuses every connection stands in for one
OFFLINE = {**os.environ, "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "NO_PROXY": ""}


def _blocks() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.S)):
            found.append((f"{doc.relative_to(ROOT)}#{i}", block))
    return found


BLOCKS = _blocks()
FLOW_BLOCKS = [b for b in BLOCKS if re.search(r"^nodes:", b[1], re.M)]
SITE_BLOCKS = [b for b in BLOCKS if re.search(r"^flows:", b[1], re.M)]
NODE_BLOCKS = [b for b in BLOCKS if b[1].startswith("- id:")]


def _plain(text: str) -> str:
    """check-jsonschema's YAML reader knows no `!secret`; to a schema a secret is text."""
    return re.sub(r"!secret (\w+)", r"'\1'", text)


def _write(tmp_path: Path, blocks: list[tuple[str, str]]) -> list[Path]:
    paths = []
    for name, text in blocks:
        path = tmp_path / (re.sub(r"[^A-Za-z0-9.-]", "_", name) + ".yaml")
        path.write_text(_plain(text), encoding="utf-8")
        paths.append(path)
    return paths


def check_jsonschema(schema: Path, files: list[Path]) -> list[str]:
    """The errors check-jsonschema reports, as 'file::path: message', offline."""
    done = subprocess.run([str(CHECK), "--no-cache", "-o", "json", "--schemafile", str(schema),
                           *map(str, files)], capture_output=True, text=True, env=OFFLINE,
                          timeout=120, check=False)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"check-jsonschema failed (exit {done.returncode}): {done.stdout}"
                    f"{done.stderr}")
    problems = [f"{e['filename']}::{e['path']}: {e['message']}" for e in report["errors"]]
    problems += [f"{e['filename']}: {e['message']}" for e in report.get("parse_errors", [])]
    assert (done.returncode == 0) == (not problems), done.stdout + done.stderr
    return problems


def test_docs_hold_examples_of_each_kind() -> None:
    assert FLOW_BLOCKS and SITE_BLOCKS and len(NODE_BLOCKS) >= 10


def test_shipped_and_example_flows_pass_the_flow_schema() -> None:
    assert check_jsonschema(SCHEMAS / "flow.schema.json", FLOWS) == []


def test_flow_examples_in_docs_pass_the_flow_schema(tmp_path: Path) -> None:
    assert check_jsonschema(SCHEMAS / "flow.schema.json", _write(tmp_path, FLOW_BLOCKS)) == []


def test_site_examples_in_docs_and_install_pass_the_site_schema(tmp_path: Path) -> None:
    files = [*_write(tmp_path, SITE_BLOCKS), ROOT / "install" / "site.example.yaml"]
    assert check_jsonschema(SCHEMAS / "site.schema.json", files) == []


def test_node_examples_in_docs_pass_their_type_schema(tmp_path: Path) -> None:
    by_type: dict[str, list[tuple[str, str]]] = {}
    for name, text in NODE_BLOCKS:
        nodes, _ = read_yaml_text(_plain(text), name)
        for i, node in enumerate(nodes):
            by_type.setdefault(node["type"], []).append(
                (f"{name}.{i}", json.dumps(node)))  # JSON is YAML, one node per file
    assert len(by_type) >= 10
    problems = []
    for type_name, nodes in sorted(by_type.items()):
        files = _write(tmp_path, nodes)
        problems += check_jsonschema(SCHEMAS / "nodes" / f"{type_name}.json", files)
    assert problems == []


def test_a_var_stands_for_any_typed_option_but_a_wrong_value_still_fails(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text("id: typed\n"
                    "vars: {every: {type: integer, default: 5},"
                    " how: {type: string, default: rate}}\n"
                    "nodes:\n"
                    "  - {id: tick, type: timer, interval_ms: '${every}', to: [pace]}\n"
                    "  - {id: pace, type: delay, delay_ms: '${every}', mode: '${how}'}\n"
                    "  - {id: later, type: delay, delay_ms: soon, mode: '${not a var}'}\n")
    assert check_jsonschema(SCHEMAS / "flow.schema.json", [flow]) == [
        f"{flow}::$.nodes[2].delay_ms: 'soon' is not valid under any of the given schemas",
        f"{flow}::$.nodes[2].mode: '${{not a var}}' is not valid under any of the given schemas",
    ]


def test_schema_files_resolve_on_disk_without_an_id() -> None:
    for path in sorted(SCHEMAS.rglob("*.json")):
        text = path.read_text(encoding="utf-8")
        assert '"$id"' not in text, f"{path}: a $id makes $refs resolve against it, not disk"
        for ref in re.findall(r'"\$ref": "([^"#]+)', text):
            assert (path.parent / ref).is_file(), f"{path}: $ref {ref} is not a file beside it"


def test_schema_files_are_draft_07_schemas_an_editor_reads() -> None:
    """VS Code's YAML extension reads draft-07 fully (2020-12 only in part)."""
    files = sorted(SCHEMAS.rglob("*.json"))
    for path in files:
        assert json.loads(path.read_text())["$schema"] == "http://json-schema.org/draft-07/schema#"
    done = subprocess.run([str(CHECK), "--no-cache", "--check-metaschema", *map(str, files)],
                          capture_output=True, text=True, env=OFFLINE, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
