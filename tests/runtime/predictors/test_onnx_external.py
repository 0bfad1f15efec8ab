"""ONNX tensors kept in external files are found anywhere in a model and refused before ONNX Runtime loads it."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import DIGITS
from models import write_external_data_function
from onnx import TensorProto, helper, numpy_helper

from modelfn.contract import load_contract
from modelfn.errors import ContractError
from modelfn.runtime.model import load_model, local_artifact
from modelfn.runtime.predictors.onnx_external import MalformedModel, external_tensors
from modelfn.settings import Settings


def _external(name: str, location: str) -> TensorProto:
    tensor = numpy_helper.from_array(np.ones(2, np.float32), name)
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    return tensor


def _model(nodes, initializers=(), sparse=(), functions=()) -> bytes:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        list(initializers),
        sparse_initializer=list(sparse),
    )
    model = helper.make_model(graph, functions=list(functions), opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def test_an_external_initializer_is_found() -> None:
    assert external_tensors(_model([helper.make_node("Add", ["x", "w"], ["y"])], [_external("w", "w.bin")])) == ["w"]


def test_an_external_constant_in_a_subgraph_is_found() -> None:
    then = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=_external("hidden", "../../etc/passwd"))],
        "then", [], [helper.make_tensor_value_info("c", TensorProto.FLOAT, [2])],
    )  # fmt: skip
    otherwise = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["d"])],
        "else",
        [],
        [helper.make_tensor_value_info("d", TensorProto.FLOAT, [2])],
    )
    node = helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=otherwise)
    assert external_tensors(_model([node])) == ["hidden"]


def test_external_sparse_values_and_function_constants_are_found() -> None:
    indices = numpy_helper.from_array(np.array([0], np.int64), "i")
    sparse = helper.make_sparse_tensor(_external("sparse_values", "/tmp/v.bin"), indices, [2])
    function = helper.make_function(
        "local", "f", ["a"], ["b"],
        [helper.make_node("Constant", [], ["b"], value=_external("in_function", "f.bin"))],
        [helper.make_opsetid("", 17)],
    )  # fmt: skip
    found = external_tensors(
        _model([helper.make_node("Identity", ["x"], ["y"])], sparse=[sparse], functions=[function])
    )
    assert sorted(found) == ["in_function", "sparse_values"]


def test_the_example_model_has_none_and_truncated_bytes_are_malformed() -> None:
    data = (DIGITS / "model.onnx").read_bytes()
    assert external_tensors(data) == []
    with pytest.raises(MalformedModel):
        external_tensors(data[: len(data) // 2])


@pytest.mark.parametrize("location", ["weights.bin", "../../../../etc/hostname", "/etc/hostname"])
def test_loading_refuses_it_with_the_fix(tmp_path, location) -> None:
    folder = write_external_data_function(tmp_path / "external", location)
    contract = load_contract(folder)
    with pytest.raises(ContractError, match=r"\['w'\] keep their data in external files.*save_as_external_data"):
        load_model(folder, contract, Settings(), *local_artifact(contract, folder))
