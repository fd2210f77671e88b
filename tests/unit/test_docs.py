"""Docs cannot rot: every example in docs/, examples/, flows/ and in option declarations
must pass validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from flowengine.formats import SITE_SCHEMA, site_schema
from flowengine.loader import load_flow
from flowengine.plan import plan_flow
from flowengine.registry import Registry
from flowengine.schema import config_schema, make_validator
from flowengine.yamlsrc import read_yaml_text

REGISTRY = Registry.default(plugins=False)


def _yaml_blocks() -> list[tuple[str, str]]:
    blocks = []
    for doc in sorted((ROOT / "docs").rglob("*.md")):
        for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.S)):
            blocks.append((f"{doc.relative_to(ROOT)}#{i}", block))
    return blocks


BLOCKS = _yaml_blocks()
FLOW_FILES = sorted([*(ROOT / "examples").glob("*.yaml"), *(ROOT / "flows").glob("*.yaml")])


@pytest.mark.parametrize("name,text", [b for b in BLOCKS if "\nnodes:" in b[1]],
                         ids=[b[0] for b in BLOCKS if "\nnodes:" in b[1]])
def test_flow_examples_in_docs_validate(name: str, text: str, tmp_path: Path) -> None:
    path = tmp_path / "example.yaml"
    path.write_text(text)
    plan_flow(load_flow(path, use_examples=True), REGISTRY)


SITE_BLOCKS = [b for b in BLOCKS if b[1].lstrip().startswith(("#", "state_dir", "flows"))
               and "\nflows:" in "\n" + b[1] and "\nnodes:" not in b[1]]


@pytest.mark.parametrize("name,text", SITE_BLOCKS, ids=[b[0] for b in SITE_BLOCKS])
def test_site_examples_in_docs_match_the_site_schema(name: str, text: str) -> None:
    plain = re.sub(r"!secret (\w+)", r"'\1'", text)  # a secret is a string to the schema
    errors = list(make_validator(SITE_SCHEMA).iter_errors(yaml.safe_load(plain)))
    assert errors == []


CONNECTION_BLOCKS = [b for b in BLOCKS if b[1].lstrip().startswith("connections:")]


@pytest.mark.parametrize("name,text", CONNECTION_BLOCKS, ids=[b[0] for b in CONNECTION_BLOCKS])
def test_connection_examples_in_docs_match_the_site_schema(name: str, text: str) -> None:
    plain = re.sub(r"!secret (\w+)", r"'\1'", text)  # a secret is a string to the schema
    errors = list(make_validator(site_schema(REGISTRY)).iter_errors(yaml.safe_load(plain)))
    assert [e.message for e in errors] == []


def test_docs_have_flow_and_site_examples() -> None:
    assert any("\nnodes:" in b for _, b in BLOCKS)
    assert any("\nflows:" in "\n" + b for _, b in BLOCKS)


@pytest.mark.parametrize("path", FLOW_FILES, ids=[p.name for p in FLOW_FILES])
def test_shipped_and_example_flows_validate(path: Path) -> None:
    plan_flow(load_flow(path, use_examples=True), REGISTRY)


def test_flow_files_point_editors_at_the_schema() -> None:
    for path in FLOW_FILES:
        assert "# yaml-language-server: $schema=../schemas/flow.schema.json" in \
            path.read_text(), path


@pytest.mark.parametrize("name", sorted(REGISTRY.node_types))
def test_option_examples_match_their_own_schema(name: str) -> None:
    cls = REGISTRY.node_types[name]
    for key, prop in config_schema(cls.config_class)["properties"].items():
        for example in prop.get("examples", []):
            errors = list(make_validator(prop).iter_errors(example))
            assert errors == [], f"{name}.{key}: example {example!r}: {errors[0].message}"


@pytest.mark.parametrize("name", sorted(REGISTRY.node_types))
def test_every_option_is_described(name: str) -> None:
    cls = REGISTRY.node_types[name]
    assert cls.summary and cls.summary != name
    for key, prop in config_schema(cls.config_class)["properties"].items():
        assert prop.get("description"), f"{name}.{key} has no description"


FLOW_DOC_SITES = [b for b in SITE_BLOCKS if b[0].startswith("docs/flows/")]


@pytest.mark.parametrize("name,text", FLOW_DOC_SITES, ids=[b[0] for b in FLOW_DOC_SITES])
def test_flow_doc_site_examples_load_and_plan(name: str, text: str, tmp_path: Path) -> None:
    """The site snippet of each shipped flow's page enables real flows with valid vars,
    and declares the connections they use."""
    from flowengine.loader import load_site
    from flowengine.preflight import check_connection_refs

    path = tmp_path / "site.yaml"
    path.write_text(text)
    names = re.findall(r"!secret (\w+)", text)
    environ = {f"ESESS_SECRET_{n.upper()}": "x" for n in names}
    site = load_site(path, flows_dir=ROOT / "flows", environ=environ)
    assert site.flows
    for flow in site.flows:
        assert check_connection_refs(plan_flow(flow, REGISTRY), site, REGISTRY) == []


def test_every_shipped_flow_has_its_page() -> None:
    shipped = {p.stem for p in (ROOT / "flows").glob("*.yaml")}
    pages = {p.stem for p in (ROOT / "docs" / "flows").glob("*.md")}
    assert shipped <= pages, f"write docs/flows/<name>.md for {sorted(shipped - pages)}"


def _nodes_md_outside_fences() -> tuple[list[str], list[str]]:
    """docs/nodes.md's lines outside code fences, and its fenced examples."""
    outside: list[str] = []
    examples: list[str] = []
    fence: list[str] | None = None
    for line in (ROOT / "docs" / "nodes.md").read_text().splitlines():
        if line.startswith("```"):
            if fence is None:
                assert line == "```yaml", f"a fence opens with {line!r}, not ```yaml"
                fence = []
            else:
                assert line == "```", f"a fence closes with {line!r}"
                examples.append("\n".join(fence))
                fence = None
        elif fence is not None:
            fence.append(line)
        else:
            outside.append(line)
    assert fence is None, "the last code fence is never closed"
    return outside, examples


def test_every_example_in_nodes_md_is_inside_its_fence() -> None:
    outside, examples = _nodes_md_outside_fences()
    stray = [line for line in outside if line.startswith(("    ", "- id:", "  type:"))]
    assert stray == [], "example lines outside a ```yaml fence"
    assert len(examples) >= 15
    for text in examples:
        nodes, _ = read_yaml_text(text, "docs/nodes.md")
        assert isinstance(nodes, list), text
        assert all(isinstance(n, dict) and {"id", "type"} <= n.keys() for n in nodes), text
