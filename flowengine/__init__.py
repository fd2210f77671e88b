"""es-ESS flows engine: load, check and run dataflows of small reusable nodes."""

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
