"""Small edits of ONNX graphs after conversion."""

from __future__ import annotations

from typing import Any


def normalize_opsets(proto: Any) -> Any:
    """One opset import per domain (the highest); converters sometimes repeat the default domain."""
    versions: dict[str, int] = {}
    for opset in proto.opset_import:
        domain = "" if opset.domain == "ai.onnx" else opset.domain
        versions[domain] = max(versions.get(domain, 0), opset.version)
    del proto.opset_import[:]
    for domain, version in sorted(versions.items()):
        entry = proto.opset_import.add()
        entry.domain, entry.version = domain, version
    return proto


def rename_outputs(proto: Any, names: dict[str, str], *, keep: list[str]) -> Any:
    """Rename graph outputs (and the node outputs feeding them); drop outputs not in ``keep``."""
    graph = proto.graph
    for node in graph.node:
        node.output[:] = [names.get(name, name) for name in node.output]
    for output in graph.output:
        output.name = names.get(output.name, output.name)
    kept = [output for output in graph.output if output.name in keep]
    del graph.output[:]
    graph.output.extend(kept)
    return proto
