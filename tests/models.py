"""Small real ONNX models built in tests (no training needed)."""

from __future__ import annotations

from pathlib import Path

import yaml
from helpers import sha256_of

#: OIP datatype -> ONNX TensorProto type name.
ONNX_TYPES = {
    "BOOL": "BOOL", "UINT8": "UINT8", "UINT16": "UINT16", "UINT32": "UINT32", "UINT64": "UINT64",
    "INT8": "INT8", "INT16": "INT16", "INT32": "INT32", "INT64": "INT64",
    "FP16": "FLOAT16", "FP32": "FLOAT", "FP64": "DOUBLE", "BYTES": "STRING",
}  # fmt: skip


Spec = tuple[str, str, list[int]]  # a tensor: name, OIP datatype, contract shape (-1 free)


def write_graph_function(
    folder: Path, name: str, nodes: list, inputs: list[Spec], outputs: list[Spec], description: str
) -> Path:
    """A function serving one ONNX graph of ``nodes`` whose inputs and outputs are the contract's."""
    import onnx
    from onnx import TensorProto, helper

    def value_info(spec: Spec):
        tensor, datatype, shape = spec
        dims = [f"d{i}" if size == -1 else size for i, size in enumerate(shape)]
        return helper.make_tensor_value_info(tensor, getattr(TensorProto, ONNX_TYPES[datatype]), dims)

    folder.mkdir(parents=True, exist_ok=True)
    graph = helper.make_graph(nodes, name, [value_info(s) for s in inputs], [value_info(s) for s in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    (folder / "model.onnx").write_bytes(model.SerializeToString())

    def spec(item: Spec) -> dict:
        return {"name": item[0], "datatype": item[1], "shape": item[2]}

    contract = {
        "name": name,
        "version": "1",
        "framework": "onnx",
        "artifact": {"uri": "model.onnx", "sha256": sha256_of(folder / "model.onnx")},
        "inputs": [spec(s) for s in inputs],
        "outputs": [spec(s) for s in outputs],
        "docs": {"description": description},
    }
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    (folder / "main.py").write_text(
        "from modelfn.adapters.gcf import http_function\n\nhandle = http_function(__file__)\n"
    )
    return folder


def write_identity_function(folder: Path, name: str, pairs: dict[str, tuple[str, str, list[int]]]) -> Path:
    """A function whose model returns each input unchanged: ``{input: (output, datatype, shape)}``."""
    from onnx import helper

    nodes = [helper.make_node("Identity", [source], [target]) for source, (target, _, _) in pairs.items()]
    inputs = [(source, datatype, shape) for source, (_, datatype, shape) in pairs.items()]
    outputs = [(target, datatype, shape) for target, datatype, shape in pairs.values()]
    return write_graph_function(folder, name, nodes, inputs, outputs, "Returns its inputs unchanged.")


def write_echo_function(folder: Path) -> Path:
    """A function whose model returns each input unchanged: ``in_<T>`` -> ``out_<T>`` for every datatype."""
    return write_identity_function(folder, "echo", {f"in_{t}": (f"out_{t}", t, [-1, 2]) for t in ONNX_TYPES})


def write_external_data_function(folder: Path, location: str) -> Path:
    """A function whose ONNX model keeps a weight in an external file at ``location``."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "weights.bin").write_bytes(np.ones(2, np.float32).tobytes())
    weight = numpy_helper.from_array(np.ones(2, np.float32), "w")
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    for key, value in {"location": location, "offset": "0", "length": "8"}.items():
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "external",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    contract = {
        "name": "external",
        "version": "1",
        "framework": "onnx",
        "artifact": {"uri": "model.onnx", "sha256": sha256_of(folder / "model.onnx")},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [2]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [2]}],
        "docs": {"description": "Keeps its weight outside the artifact."},
    }
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    return folder


def write_training_graph_function(folder: Path) -> Path:
    """An ONNX MLP exported with training-only leftovers (Dropout, Identity) and unfused MatMul + Add.

    Carries ``validation.npz`` so ``modelfn convert`` can verify what it does to the graph.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    weights = {
        "w1": rng.normal(size=(8, 16)).astype(np.float32), "b1": rng.normal(size=16).astype(np.float32),
        "w2": rng.normal(size=(16, 3)).astype(np.float32), "b2": rng.normal(size=3).astype(np.float32),
    }  # fmt: skip
    nodes = [
        helper.make_node("Identity", ["x"], ["x_copy"]),
        helper.make_node("MatMul", ["x_copy", "w1"], ["h_mm"]),
        helper.make_node("Add", ["h_mm", "b1"], ["h_lin"]),
        helper.make_node("Relu", ["h_lin"], ["h"]),
        helper.make_node("Dropout", ["h"], ["h_drop"]),  # a no-op at inference
        helper.make_node("MatMul", ["h_drop", "w2"], ["y_mm"]),
        helper.make_node("Add", ["y_mm", "b2"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "trained",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(array, name) for name, array in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    np.savez(folder / "validation.npz", x=rng.normal(size=(64, 8)).astype(np.float32))
    contract = {
        "name": "trained",
        "version": "1",
        "framework": "onnx",
        "artifact": {"uri": "model.onnx", "sha256": sha256_of(folder / "model.onnx")},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 8]}],
        "outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, 3]}],
        "validation": "validation.npz",
        "docs": {"description": "An MLP graph as a training framework might export it."},
    }
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    return folder


def write_slow_function(folder: Path) -> Path:
    """An ONNX model that runs as long as asked: ``trips`` multiplications of a 256x256 matrix (a Loop)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("MatMul", ["x_in", "w"], ["x_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x_in", TensorProto.FLOAT, [256, 256]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x_out", TensorProto.FLOAT, [256, 256]),
        ],
        [numpy_helper.from_array(np.eye(256, dtype=np.float32), "w")],
    )
    graph = helper.make_graph(
        [
            helper.make_node("Squeeze", ["trips"], ["count"]),
            helper.make_node("Loop", ["count", "", "x"], ["y"], body=body),
        ],
        "slow",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [256, 256]),
            helper.make_tensor_value_info("trips", TensorProto.INT64, [1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [256, 256])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    contract = {
        "name": "slow",
        "version": "1",
        "framework": "onnx",
        "artifact": {"uri": "model.onnx", "sha256": sha256_of(folder / "model.onnx")},
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [256, 256]},
            {"name": "trips", "datatype": "INT64", "shape": [1]},
        ],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [256, 256]}],
        "docs": {"description": "Multiplies x by the identity `trips` times: as slow as asked."},
    }
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    (folder / "main.py").write_text(
        "from modelfn.adapters.gcf import http_function\n\nhandle = http_function(__file__)\n"
    )
    return folder


def write_pinned_external_function(folder: Path, *, location: str = "weights/model.data", pin: bool = True) -> Path:
    """An ONNX ``y = x @ W`` (W 64x32) saved with its weight as external data at ``location``, pinned in the contract.

    Saved by onnx's own ``save_as_external_data``, the way a model over 2 GB is saved.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    weight = numpy_helper.from_array(np.arange(64 * 32, dtype=np.float32).reshape(64, 32) / 1000, "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "pinned",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 32])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (folder / location).parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(folder / "model.onnx"), save_as_external_data=True, location=location,
                    size_threshold=0)  # fmt: skip
    artifact = {"uri": "model.onnx", "sha256": sha256_of(folder / "model.onnx")}
    if pin:
        artifact["files"] = {location: sha256_of(folder / location)}
    contract = {
        "name": "pinned",
        "version": "1",
        "framework": "onnx",
        "artifact": artifact,
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 32]}],
        "docs": {"description": "Keeps its weight in a pinned external-data file."},
    }
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    return folder
