"""JSON Schemas of the two file formats: flow files and the site file.

The engine validates a flow file's structure with `FLOW_SCHEMA` and each node's
config with its own type's schema (so errors name the node). `esess-flowctl schemas`
writes `schemas/flow.schema.json` with an `if type == X then nodes/X.json` branch per
node type, which gives editors completion for every node's options.

The files in schemas/ are for tools that read a flow as written, before its vars are
substituted: an editor's YAML extension, `check-jsonschema`. So they have no `$id`
(a `$ref` such as `nodes/timer.json` resolves against the file it is written in, on
disk), every typed option of a node also takes a whole-value `${name}`, and they declare
draft-07, the newest JSON Schema VS Code's YAML extension fully supports (they use no
keyword that means something else in draft 2020-12, the engine's own dialect).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from flowengine.schema import DIALECT, config_schema, make_validator

if TYPE_CHECKING:
    from flowengine.registry import Registry

__all__ = ["ADMIN_HOSTS", "COMMON_NODE_KEYS", "FLOW_SCHEMA", "SITE_SCHEMA", "VAR_REF_PATTERN",
           "VAR_TYPES", "accept_var_refs", "flow_schema", "node_file_schema", "site_schema"]

FLOW_ID_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
NODE_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]*$"
INSTANCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
FILE_DIALECT = "http://json-schema.org/draft-07/schema#"  # of the files in schemas/
VAR_REF_PATTERN = r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$"
ADMIN_HOSTS = ("127.0.0.1", "::1")  # the admin API listens on loopback only

_VAR_REF: dict[str, Any] = {"type": "string", "pattern": VAR_REF_PATTERN,
                            "description": "a flow var, ${name}, of the right type"}
_SHOWN = ("description", "default", "examples", "x-secret")  # stay on top, for hover text

VAR_TYPES = {"string": "string", "number": "number", "integer": "integer",
             "boolean": "boolean", "list": "array", "object": "object",
             "secret": "string", "any": None}

_TO_SCHEMA: dict[str, Any] = {
    "description": "where this node's messages go: a list of node ids (port 'out'), or a "
                   "mapping output port -> list of ids; 'id:port' reaches an input port",
    "anyOf": [
        {"type": "array", "items": {"type": "string"}},
        {"type": "string"},
        {"type": "object", "additionalProperties": {
            "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]}},
    ],
}

COMMON_NODE_KEYS: dict[str, Any] = {
    "id": {"type": "string", "pattern": NODE_ID_PATTERN,
           "description": "node id, unique in the flow (short lower-case word)"},
    "type": {"type": "string", "description": "node type, see `esess-flowctl list-nodes`"},
    "to": _TO_SCHEMA,
    "comment": {"type": "string", "description": "free text for the reader"},
    "when": {"description": "the node is part of the flow only when this is set (not null, "
                            "false, 0 or empty), usually ${optional_var}; wires to a node "
                            "left out are left out too"},
}

_VAR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type"],
    "additionalProperties": False,
    "properties": {
        "type": {"enum": list(VAR_TYPES)},
        "description": {"type": "string"},
        "default": {},
        "example": {},
        "enum": {"type": "array"},
        "minimum": {"type": "number"},
        "maximum": {"type": "number"},
    },
}

FLOW_SCHEMA: dict[str, Any] = {
    "$schema": DIALECT,
    "title": "es-ESS flows: flow file",
    "type": "object",
    "required": ["id", "nodes"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": FLOW_ID_PATTERN,
               "description": "flow id, kebab-case (time-to-go)", "examples": ["time-to-go"]},
        "description": {"type": "string", "description": "what the flow does, one sentence"},
        "vars": {"type": "object", "description": "typed variables, used as ${name}",
                 "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
                 "additionalProperties": _VAR_SCHEMA},
        "nodes": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["id", "type"], "properties": COMMON_NODE_KEYS}},
    },
}

_FLOW_ENTRY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "use": {"type": "string", "description": "id of a shipped flow (see flows/)"},
        "file": {"type": "string", "description": "path of a custom flow file, relative to "
                                                  "the site file"},
        "instance": {"type": "string", "pattern": INSTANCE_PATTERN,
                     "description": "instance name when a flow is used more than once; "
                                    "the flow id becomes '<flow>@<instance>'"},
        "id": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9@_-]*$",
               "description": "explicit flow id of this instance"},
        "enabled": {"type": "boolean", "default": True},
        "vars": {"type": "object", "description": "values of the flow's vars"},
    },
    "oneOf": [{"required": ["use"]}, {"required": ["file"]}],
}

_ADMIN_PORT: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 65535,
                               "examples": [8181], "description": "TCP port for listen: tcp"}

SITE_SCHEMA: dict[str, Any] = {
    "$schema": DIALECT,
    "title": "es-ESS flows: site file",
    "type": "object",
    "required": ["flows"],
    "additionalProperties": False,
    "properties": {
        "connections": {"type": "object", "description": "shared connections by kind and name",
                        "additionalProperties": {"type": "object",
                                                 "additionalProperties": {"type": "object"}}},
        "flows": {"type": "array", "items": _FLOW_ENTRY},
        "observe": {"type": "array", "description": "connections (kind.name, e.g. mqtt.main) "
                    "that publish the runtime's events and node statuses",
                    "items": {"type": "string", "pattern": r"^[a-z][a-z0-9_]*\.[A-Za-z0-9_-]+$"}},
        "flows_dir": {"type": "string", "description": "where shipped flows are looked up "
                                                       "(default: the flows/ of this install)"},
        "state_dir": {"type": "string", "default": "/data/es-ESS-flows/state",
                      "description": "persistent node state (counters, energy totals)"},
        "secrets": {"type": "string", "default": "secrets.yaml",
                    "description": "secrets file, relative to the site file"},
        "log": {"type": "object", "additionalProperties": False, "properties": {
            "level": {"enum": ["TRACE", "DEBUG", "APP_DEBUG", "INFO", "WARNING", "ERROR",
                               "CRITICAL"], "default": "INFO"},
            "file": {"type": "string",
                     "description": "log file, rotated daily at midnight UTC, 14 kept"}}},
        "admin": {"type": "object", "additionalProperties": False,
                  "description": "where the admin API (esess-flowctl status, deploy, watch, "
                                 "stop, start) listens: a unix socket in state_dir, or a "
                                 "loopback TCP port; never another address",
                  "properties": {
                      "listen": {"enum": ["unix", "tcp"], "default": "unix",
                                 "description": "unix: <state_dir>/admin.sock; tcp: port on "
                                                "host (loopback only)"},
                      "host": {"enum": list(ADMIN_HOSTS), "default": "127.0.0.1",
                               "description": "loopback address for listen: tcp (the admin "
                                              "API never listens on another address)",
                               "x-hint": "the admin API listens on loopback only: "
                                         + " or ".join(ADMIN_HOSTS)},
                      "port": _ADMIN_PORT},
                  "if": {"properties": {"listen": {"const": "tcp"}}, "required": ["listen"]},
                  "then": {"required": ["port"], "properties": {"port": _ADMIN_PORT}}},
        "guardian": {"type": "object", "additionalProperties": False,
                     "description": "the process that applies the safe states when the "
                                    "runtime dies or hangs (on by default on a GX)",
                     "properties": {"timeout_s": {
                         "type": "number", "minimum": 2, "maximum": 600, "default": 10,
                         "description": "no heartbeat from the runtime for this long: it "
                                        "hangs; the guardian applies the safe states, kills "
                                        "and restarts it"}}},
    },
}


def accept_var_refs(schema: dict[str, Any], *, wrap: bool = True) -> dict[str, Any]:
    """`schema`, where every value it types also may be written `${name}` (a new dict).

    A whole-value `${name}` keeps its var's type, so `interval_ms: ${every_ms}` is a
    number once substituted; before that, as an editor reads the file, it is text. Where
    a schema would refuse that text, it becomes `anyOf: [schema, ${name}]`, also inside
    lists and mappings; a plain string accepts it already.
    """
    out = dict(schema)
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: accept_var_refs(v) for k, v in out["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = accept_var_refs(out[key])
    for key in ("anyOf", "oneOf"):
        if key in out:  # the members' insides; the whole is wrapped once, below
            out[key] = [accept_var_refs(member, wrap=False) for member in out[key]]
    if not wrap or make_validator(out).is_valid("${name}"):
        return out
    shown = {k: out.pop(k) for k in _SHOWN if k in out}
    return {**shown, "anyOf": [out, _VAR_REF]}


def node_file_schema(cls: Any) -> dict[str, Any]:
    """schemas/nodes/<type>.json: the node's own options plus the common keys; every
    option also takes `${name}` (see `accept_var_refs`)."""
    schema = copy.deepcopy(config_schema(cls.config_class))
    props = {"type": {"const": cls.type_name, "description": cls.summary}}
    props.update({k: v for k, v in COMMON_NODE_KEYS.items() if k != "type"})
    props.update({k: accept_var_refs(v) for k, v in schema["properties"].items()})
    out: dict[str, Any] = {
        "$schema": FILE_DIALECT,
        "title": f"{cls.type_name}: {cls.summary}",
        "type": "object",
        "required": ["id", "type", *schema.get("required", [])],
        "additionalProperties": False,
        "properties": props,
    }
    return out


def flow_schema(registry: Registry) -> dict[str, Any]:
    """The flow file schema with one branch per node type, for editors."""
    schema = copy.deepcopy(FLOW_SCHEMA)
    schema["$schema"] = FILE_DIALECT
    items = schema["properties"]["nodes"]["items"]
    names = sorted(registry.node_types)
    items["properties"]["type"] = {**items["properties"]["type"], "enum": names}
    items["allOf"] = [
        {"if": {"properties": {"type": {"const": name}}, "required": ["type"]},
         "then": {"$ref": f"nodes/{name}.json"}}
        for name in names
    ]
    return schema


def site_schema(registry: Registry) -> dict[str, Any]:
    schema = copy.deepcopy(SITE_SCHEMA)
    schema["$schema"] = FILE_DIALECT
    kinds = {
        kind: {"type": "object", "description": spec.summary,
               "additionalProperties": config_schema(spec.config_class)}
        for kind, spec in sorted(registry.connection_kinds.items())
    }
    conns = schema["properties"]["connections"]
    conns["properties"] = kinds
    conns["additionalProperties"] = False
    return schema
