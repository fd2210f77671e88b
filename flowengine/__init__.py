"""es-ESS flows engine: load, check and run dataflows of small reusable nodes.

The public names below are imported on first use, so that a process which needs only
a part of the engine (the guardian, standard library only) does not load the rest.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not from typing: the guardian imports this package, and typing is big
if TYPE_CHECKING:
    from typing import Any

    from flowengine.errors import ConfigError, ConfigErrors, FlowEngineError
    from flowengine.model import FlowSpec, Message, NodeSpec, Secret, SourceMark
    from flowengine.node import Node, node_type, option

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ConfigErrors",
    "FlowEngineError",
    "FlowSpec",
    "Message",
    "Node",
    "NodeSpec",
    "Secret",
    "SourceMark",
    "__version__",
    "node_type",
    "option",
]

_HOMES = {"ConfigError": "errors", "ConfigErrors": "errors", "FlowEngineError": "errors",
          "FlowSpec": "model", "Message": "model", "NodeSpec": "model", "Secret": "model",
          "SourceMark": "model", "Node": "node", "node_type": "node", "option": "node"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'flowengine' has no attribute {name!r}")
    return getattr(importlib.import_module(f"flowengine.{home}"), name)
