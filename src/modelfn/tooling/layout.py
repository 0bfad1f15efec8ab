"""Lay an ONNX model's weights out for loading: the graph in one small file, the weights in one mapped file.

ONNX Runtime builds a session from a model whose weights are embedded in the protobuf by parsing
every weight into a string, copying it into a tensor and pre-packing that: three passes over the
weights, with freshly faulted memory for each. Weights kept in an external-data file are mapped
from the file and pre-packed straight from the map, in one pass. On a 768 MiB MatMul chain (2
CPUs): 0.8 s and 836 MiB at the peak, against 1.9 s and 1,205 MiB embedded.

The layout is lossless: every tensor keeps its bytes and the graph is unchanged; only where the
bytes live moves. Each tensor starts on a 64 KiB boundary (the allocation granularity mappings
need, and an alignment every kernel accepts). ``modelfn build`` and ``modelfn push`` apply it per
``deploy.weights``; the bundled or pushed contract then pins both files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelfn.errors import ContractError
from modelfn.runtime.digests import hash_path, same_digest, sha256_hex

#: Tensors of at least this many bytes move out (onnx's own threshold for external data).
MIN_TENSOR_BYTES = 1024
#: ``auto`` lays out model files of at least this size; smaller ones load in milliseconds either way.
AUTO_MIN_FILE_BYTES = 16 << 20
ALIGNMENT = 64 << 10
_COPY_BYTES = 8 << 20


def wants_layout(mode: str, model: Path, pinned_files: dict[str, str]) -> bool:
    """Whether ``deploy.weights`` (``mode``) asks for this ONNX file to be laid out.

    A model that already keeps its data outside (``artifact.files``) is bundled as it is.
    """
    if mode == "embedded" or pinned_files or model.suffix.lower() != ".onnx":
        return False
    return mode == "external" or model.stat().st_size >= AUTO_MIN_FILE_BYTES


def externalize(model: Path, dest: Path) -> tuple[str, dict[str, str]] | None:
    """Write ``model`` to ``dest`` (a file name in another folder) with its weights in ``<dest>.data``.

    Returns the pins of the new files, ``(sha256 of dest, {data file name: sha256})``, or ``None``
    when no tensor is large enough to move (``dest`` is then not written).
    """
    import onnx

    proto = onnx.load_model(str(model), load_external_data=False)
    tensors = [t for t in _initializers(proto.graph) if _movable(t)]
    if not tensors:
        return None
    data_name = dest.name + ".data"
    data_path, graph_path = dest.with_name(data_name), dest
    partial_data = data_path.with_name(data_path.name + ".partial")
    partial_graph = graph_path.with_name(graph_path.name + ".partial")
    data_hash = hashlib.sha256()  # hashed as it is written: the file is not read back
    try:
        with open(partial_data, "wb") as out:
            for tensor in tensors:
                padding = bytes(-out.tell() % ALIGNMENT)  # up to the next 64 KiB boundary
                out.write(padding)
                data_hash.update(padding)
                offset = out.tell()
                view = memoryview(tensor.raw_data)
                for start in range(0, len(view), _COPY_BYTES):
                    out.write(view[start : start + _COPY_BYTES])
                    data_hash.update(view[start : start + _COPY_BYTES])
                _point_at(tensor, data_name, offset, len(view))
            out.flush()
            os.fsync(out.fileno())
        graph = proto.SerializeToString()
        with open(partial_graph, "wb") as out:
            out.write(graph)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial_data, data_path)
        os.replace(partial_graph, graph_path)
    except BaseException:
        for path in (partial_data, partial_graph, data_path, graph_path):
            path.unlink(missing_ok=True)
        raise
    return sha256_hex(graph), {data_name: data_hash.hexdigest()}


def _movable(tensor: Any) -> bool:
    import onnx

    return (
        tensor.data_location != onnx.TensorProto.EXTERNAL
        and tensor.HasField("raw_data")
        and len(tensor.raw_data) >= MIN_TENSOR_BYTES
    )


def _point_at(tensor: Any, location: str, offset: int, length: int) -> None:
    import onnx

    tensor.ClearField("raw_data")
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    tensor.data_location = onnx.TensorProto.EXTERNAL


def _initializers(graph: Any) -> list[Any]:
    """The initializers of ``graph`` and of every subgraph (``If``, ``Loop``, ``Scan`` bodies)."""
    found = list(graph.initializer)
    for node in graph.node:
        for attribute in node.attribute:
            for subgraph in [*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs]:
                found += _initializers(subgraph)
    return found


def lay_out_bundle(source: Path, dest: Path, contract: Any) -> bool:
    """Write ``source``'s local ONNX artifact into ``dest`` laid out for loading, per ``deploy.weights``.

    The original is verified against its pin first, so the new pins vouch only for verified bytes;
    ``dest``'s contract (copied there already) is rewritten to pin the new files. Returns whether it
    did; ``False`` leaves the artifact for the caller to copy as it is.
    """
    import yaml

    from modelfn.contract import CONTRACT_FILE, compile_contract, resolve_local_artifact

    artifact = contract.artifact
    if contract.framework != "onnx" or artifact is None or not artifact.bundled:
        return False
    mode = contract.deploy.weights if contract.deploy is not None else "auto"
    model = resolve_local_artifact(contract, source)
    if not wants_layout(mode, model, artifact.files):
        return False
    actual, _ = hash_path(model)
    if not same_digest(actual, contract.verified_artifact().sha256):
        raise ContractError(f"{model}: the bytes do not match the sha256 the contract pins")
    target = dest / model.relative_to(source.resolve())
    target.parent.mkdir(parents=True, exist_ok=True)
    pins = externalize(model, target)
    if pins is None:
        return False
    raw = yaml.safe_load((dest / CONTRACT_FILE).read_text())
    raw["artifact"]["sha256"], raw["artifact"]["files"] = pins
    header = (
        f"# Written by modelfn: {artifact.file_name}'s weights moved to {next(iter(pins[1]))} for loading\n"
        f"# (deploy.weights: {mode}); the source contract pins the embedded file, sha256 {actual}.\n"
    )
    (dest / CONTRACT_FILE).write_text(header + yaml.safe_dump(raw, sort_keys=False))
    compile_contract(dest)
    return True


@contextlib.contextmanager
def laid_out_folder(folder: Path) -> Iterator[tuple[Path, bool]]:
    """``(folder to push, whether it was laid out)``: ``folder`` itself, or a temporary copy of its
    contract with the artifact laid out for loading (what ``modelfn push`` uploads)."""
    from modelfn.contract import CONTRACT_FILE, compile_contract

    contract = compile_contract(folder)
    with tempfile.TemporaryDirectory(prefix="modelfn-layout-") as scratch:
        dest = Path(scratch)
        shutil.copy2(folder / CONTRACT_FILE, dest / CONTRACT_FILE)
        if lay_out_bundle(folder, dest, contract):
            yield dest, True
        else:
            yield folder, False
