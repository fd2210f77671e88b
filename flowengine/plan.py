"""Validated, instantiated flows: node types resolved, configs built, wiring checked.

`plan_flow()` turns a FlowSpec into a FlowPlan or raises ConfigErrors with every
problem at once: unknown node types, config schema violations, errors a node's
constructor finds (a formula that does not compile), duplicate ids, dangling `to:`
targets, unknown ports, cycles without a pacing node, and cross-node checks.
No I/O happens here, so `validate` and `run` see exactly the same errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flowengine.errors import ConfigError, ConfigErrors, GraphError
from flowengine.jsoncheck import Validator
from flowengine.model import FlowSpec, JsonValue, NodeSpec, SourceMark
from flowengine.node import Node, UpstreamInfo
from flowengine.registry import Registry
from flowengine.schema import (
    build_config,
    config_schema,
    did_you_mean,
    make_validator,
    schema_errors,
)
from flowengine.vars import blame_var

__all__ = ["FlowPlan", "PlannedNode", "plan_flow"]

_VALIDATORS: dict[type, Validator] = {}


@dataclass
class PlannedNode:
    spec: NodeSpec
    cls: type[Node[Any]]
    config: Any
    node: Node[Any]
    routes: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


@dataclass
class FlowPlan:
    spec: FlowSpec
    registry: Registry
    nodes: dict[str, PlannedNode]
    order: list[str]  # start order: downstream nodes first

    def fresh(self) -> FlowPlan:
        """The same plan with new node instances (to start the flow again)."""
        nodes = {nid: PlannedNode(p.spec, p.cls, p.config, p.cls(p.config, p.spec), p.routes)
                 for nid, p in self.nodes.items()}
        return FlowPlan(self.spec, self.registry, nodes, self.order)

    def child(self, parent: NodeSpec, child_id: str, type_name: str,
              config: Mapping[str, JsonValue]) -> tuple[NodeSpec, type[Node[Any]], Any, Node[Any]]:
        """Validate and build a dynamic child node; raises ConfigErrors."""
        spec = NodeSpec(id=f"{parent.id}/{child_id}", type=type_name, config=dict(config),
                        mark=parent.mark)
        cls, cfg, node, errors = _build_node(spec, self.registry, self.spec)
        if errors or cls is None or node is None:
            raise ConfigErrors(errors)
        return spec, cls, cfg, node


def _validator(cls: type) -> Validator:
    found = _VALIDATORS.get(cls)
    if found is None:
        found = _VALIDATORS[cls] = make_validator(config_schema(cls))
    return found


def _build_node(spec: NodeSpec, registry: Registry, flow: FlowSpec
                ) -> tuple[type[Node[Any]] | None, Any, Node[Any] | None, list[ConfigError]]:
    def context(error: ConfigError) -> ConfigError:
        return blame_var(error.within(flow=flow.id, node=spec.id, node_type=spec.type),
                         flow, spec)

    try:
        cls = registry.get(spec.type, mark=spec.key_marks.get(("type",), spec.mark))
    except ConfigError as exc:
        return None, None, None, [context(exc)]
    errors = schema_errors(_validator(cls.config_class), dict(spec.config),
                           lambda p: spec.key_marks.get(p), fallback=spec.mark)
    if errors:
        return cls, None, None, [context(e) for e in errors]
    try:
        config = build_config(cls.config_class, spec.config)
        node = cls(config, spec)
    except ConfigErrors as exc:
        return cls, None, None, [context(e) for e in exc.errors]
    except ConfigError as exc:
        if exc.mark is None:
            exc.mark = spec.mark
        return cls, None, None, [context(exc)]
    return cls, config, node, []


def plan_flow(spec: FlowSpec, registry: Registry) -> FlowPlan:
    """Check and instantiate every node of a flow; raise ConfigErrors with all problems."""
    errors: list[ConfigError] = []
    nodes: dict[str, PlannedNode] = {}
    seen: dict[str, NodeSpec] = {}
    for node_spec in spec.nodes:
        if node_spec.id in seen:
            errors.append(GraphError(
                f"duplicate node id '{node_spec.id}'", node_spec.mark, flow=spec.id,
                hint=f"first used at line {seen[node_spec.id].mark.line}; ids must be unique"))
            continue
        seen[node_spec.id] = node_spec
        cls, config, node, problems = _build_node(node_spec, registry, spec)
        errors.extend(problems)
        if cls is not None and node is not None:
            nodes[node_spec.id] = PlannedNode(node_spec, cls, config, node)
    errors.extend(_wire(spec, seen, nodes))
    if not errors:
        errors.extend(_cycles(spec, nodes))
        errors.extend(_cross_checks(spec, nodes))
    if errors:
        raise ConfigErrors(errors)
    return FlowPlan(spec, registry, nodes, _start_order(nodes))


def _wire(spec: FlowSpec, seen: Mapping[str, NodeSpec],
          nodes: dict[str, PlannedNode]) -> list[ConfigError]:
    errors: list[ConfigError] = []
    for node_spec in seen.values():
        source = nodes.get(node_spec.id)
        for wire in node_spec.wires:

            def error(message: str, hint: str, spec_: NodeSpec = node_spec,
                      mark: SourceMark | None = wire.mark) -> GraphError:
                return GraphError(message, mark, spec.id, spec_.id, spec_.type, hint)

            if wire.target not in seen:
                hint = did_you_mean(wire.target, seen) or "known nodes: " + ", ".join(seen)
                errors.append(error(f"'to:' names the unknown node '{wire.target}'", hint))
                continue
            target = nodes.get(wire.target)
            if source is None or target is None:
                continue  # the node itself has errors, reported already
            ports = source.cls.output_ports(source.config)
            if wire.port not in ports:
                errors.append(error(
                    f"unknown output port '{wire.port}'",
                    did_you_mean(wire.port, ports) or
                    f"{node_spec.type} has the ports: {', '.join(ports)}"))
                continue
            if wire.target_port not in target.cls.inputs:
                inputs = list(target.cls.inputs)
                hint = did_you_mean(wire.target_port, inputs) or (
                    f"{target.spec.type} takes: {', '.join(inputs)}" if inputs
                    else f"{target.spec.type} has no inputs")
                errors.append(error(
                    f"node '{wire.target}' has no input port '{wire.target_port}'", hint))
                continue
            source.routes.setdefault(wire.port, []).append((wire.target, wire.target_port))
    return errors


def _cycles(spec: FlowSpec, nodes: Mapping[str, PlannedNode]) -> list[ConfigError]:
    """A loop is allowed only through a node that paces what it passes on (delay...)."""
    errors: list[ConfigError] = []
    for component in _strongly_connected(nodes):
        if len(component) == 1:
            nid = component[0]
            targets = [t for ts in nodes[nid].routes.values() for t, _ in ts]
            if nid not in targets:
                continue
        if any(nodes[n].cls.breaks_cycles for n in component):
            continue
        first = min(component, key=lambda n: nodes[n].spec.mark.line)
        loop = " -> ".join([*sorted(component, key=lambda n: nodes[n].spec.mark.line), first])
        errors.append(GraphError(
            f"the wiring loops: {loop}", nodes[first].spec.mark, flow=spec.id, node=first,
            hint="a loop would pass messages around without pause; put a `delay` node in it "
                 "or remove a wire"))
    return errors


def _strongly_connected(nodes: Mapping[str, PlannedNode]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:  # recursion depth is bounded by the flow's size
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for targets in nodes[v].routes.values():
            for w, _ in targets:
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            out.append(component)

    for v in nodes:
        if v not in index:
            visit(v)
    return out


def _cross_checks(spec: FlowSpec, nodes: Mapping[str, PlannedNode]) -> list[ConfigError]:
    upstream: dict[str, list[str]] = {nid: [] for nid in nodes}
    for nid, planned in nodes.items():
        for targets in planned.routes.values():
            for target, _ in targets:
                upstream[target].append(nid)
    errors: list[ConfigError] = []
    for nid, planned in nodes.items():
        topics: frozenset[str] | None = frozenset()
        for source in upstream[nid]:
            src = nodes[source]
            emitted = src.cls.output_topics(src.config)
            topics = None if emitted is None or topics is None else topics | emitted
        for error in planned.node.check(UpstreamInfo(topics, tuple(upstream[nid]))):
            errors.append(blame_var(
                error.within(flow=spec.id, node=nid, node_type=planned.spec.type),
                spec, planned.spec))
    return errors


def _start_order(nodes: Mapping[str, PlannedNode]) -> list[str]:
    """Downstream first (sinks, then transforms, then sources)."""
    order: list[str] = []
    done: set[str] = set()

    def visit(v: str) -> None:
        done.add(v)
        for targets in nodes[v].routes.values():
            for w, _ in targets:
                if w not in done:
                    visit(w)
        order.append(v)

    for v in nodes:
        if v not in done:
            visit(v)
    return order
