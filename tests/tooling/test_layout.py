"""Weights laid out for loading (``deploy.weights``): lossless, aligned, pinned, and what build and push carry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from helpers import sha256_of
from onnx import TensorProto, helper, numpy_helper

from modelfn.cli import cli
from modelfn.contract import load_contract
from modelfn.errors import ContractError
from modelfn.registry import Registry
from modelfn.runtime.model import load_model, local_artifact
from modelfn.settings import Settings
from modelfn.tooling.build import FunctionLayout, copy_sources
from modelfn.tooling.layout import ALIGNMENT, externalize, lay_out_bundle, wants_layout


def write_branching_model(path: Path) -> dict[str, bytes]:
    """MatMuls in the main graph and inside an ``If`` branch, an odd-sized weight, and tensors too small to move.

    Returns the raw bytes of every initializer by name, the main graph's and the branch's.
    """
    rng = np.random.default_rng(7)
    w0 = rng.standard_normal((64, 48), dtype=np.float32)
    w1 = rng.standard_normal((48, 64), dtype=np.float32)  # 12 KiB: offsets after it need padding
    inner = rng.standard_normal((64, 64), dtype=np.float32)
    bias = rng.standard_normal((64,), dtype=np.float32)  # 256 bytes: stays embedded
    then_branch = helper.make_graph(
        [helper.make_node("MatMul", ["h1", "inner"], ["branch_out"])],
        "then",
        [],
        [helper.make_tensor_value_info("branch_out", TensorProto.FLOAT, [-1, 64])],
        [numpy_helper.from_array(inner, "inner")],
    )
    else_branch = helper.make_graph(
        [helper.make_node("Identity", ["h1"], ["else_out"])],
        "else",
        [],
        [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, [-1, 64])],
    )
    nodes = [
        helper.make_node("MatMul", ["x", "w0"], ["h0"]),
        helper.make_node("MatMul", ["h0", "w1"], ["h1"]),
        helper.make_node("If", ["cond"], ["branched"], then_branch=then_branch, else_branch=else_branch),
        helper.make_node("Add", ["branched", "bias"], ["y"]),
    ]
    initializers = [
        numpy_helper.from_array(w0, "w0"),
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(bias, "bias"),
        numpy_helper.from_array(np.array(True), "cond"),
    ]
    graph = helper.make_graph(
        nodes,
        "branching",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 64])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return {t.name: t.raw_data for t in [*initializers, *then_branch.initializer]}


def run(path: Path, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one thread: the same sums in the same order, so equal bit for bit
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_the_laid_out_model_answers_bit_for_bit_as_the_original(tmp_path) -> None:
    source, dest = tmp_path / "source" / "model.onnx", tmp_path / "dest" / "model.onnx"
    source.parent.mkdir()
    dest.parent.mkdir()
    write_branching_model(source)
    graph_sha, files = externalize(source, dest)
    x = np.random.default_rng(1).standard_normal((3, 64), dtype=np.float32)
    assert np.array_equal(run(source, x), run(dest, x))
    assert graph_sha == sha256_of(dest) and files == {"model.onnx.data": sha256_of(dest.with_name("model.onnx.data"))}
    assert dest.stat().st_size < 2048  # the graph alone
    assert not list(dest.parent.glob("*.partial"))


def test_every_moved_tensor_starts_on_a_boundary_and_keeps_its_bytes(tmp_path) -> None:
    source, dest = tmp_path / "model.onnx", tmp_path / "out" / "model.onnx"
    dest.parent.mkdir()
    original = write_branching_model(source)
    externalize(source, dest)
    proto = onnx.load_model(str(dest), load_external_data=False)
    data = dest.with_name("model.onnx.data").read_bytes()
    branch = next(a.g for a in proto.graph.node[2].attribute if a.name == "then_branch")
    moved, kept = {}, {}
    for tensor in [*proto.graph.initializer, *branch.initializer]:
        if tensor.data_location == TensorProto.EXTERNAL:
            entry = {e.key: e.value for e in tensor.external_data}
            offset, length = int(entry["offset"]), int(entry["length"])
            assert entry["location"] == "model.onnx.data" and offset % ALIGNMENT == 0
            moved[tensor.name] = data[offset : offset + length]
        else:
            kept[tensor.name] = tensor.raw_data
    assert set(moved) == {"w0", "w1", "inner"}  # the branch's weight too
    assert set(kept) == {"bias", "cond"}  # under 1 KiB: not worth a mapping
    assert {**moved, **kept} == original


def test_auto_lays_out_large_embedded_onnx_files_only(tmp_path) -> None:
    small = tmp_path / "small.onnx"
    small.write_bytes(b"\0" * 1024)
    large = tmp_path / "large.onnx"
    with large.open("wb") as handle:
        handle.truncate(16 << 20)  # sparse: only its size matters here
    assert not wants_layout("auto", small, {})
    assert wants_layout("auto", large, {})
    assert wants_layout("external", small, {})
    assert not wants_layout("embedded", large, {})
    assert not wants_layout("external", large, {"large.onnx.data": "0" * 64})  # already external: as it is
    assert not wants_layout("external", tmp_path / "model.skops", {})


def test_a_bundle_is_laid_out_pinned_and_served_as_the_original(function_copy, tmp_path) -> None:
    source = function_copy(deploy={"weights": "external"})
    dest = tmp_path / "bundle"
    dest.mkdir()
    (dest / "modelfn.yaml").write_bytes((source / "modelfn.yaml").read_bytes())
    assert lay_out_bundle(source, dest, load_contract(source))
    contract = load_contract(dest)
    artifact = contract.verified_artifact()
    assert artifact.files == {"model.onnx.data": sha256_of(dest / "model.onnx.data")}
    assert artifact.sha256 == sha256_of(dest / "model.onnx")
    assert "the source contract pins the embedded file" in (dest / "modelfn.yaml").read_text()
    original = load_model(source, load_contract(source), Settings(), *local_artifact(load_contract(source), source))
    laid = load_model(source, contract, Settings(), *local_artifact(contract, dest))  # hooks from the source
    inputs = {spec.name: np.random.default_rng(2).random((2, *spec.shape[1:]), dtype=np.float32)
              for spec in contract.inputs}  # fmt: skip
    expected, actual = original.infer(inputs), laid.infer(inputs)
    assert expected.keys() == actual.keys() and all(np.array_equal(expected[k], actual[k]) for k in expected)


def test_an_original_that_does_not_match_its_pin_is_refused_and_nothing_is_written(function_copy, tmp_path) -> None:
    source = function_copy(deploy={"weights": "external"})
    contract = load_contract(source)
    (source / "model.onnx").write_bytes((source / "model.onnx").read_bytes() + b"\0")
    dest = tmp_path / "bundle"
    dest.mkdir()
    (dest / "modelfn.yaml").write_bytes((source / "modelfn.yaml").read_bytes())
    with pytest.raises(ContractError, match="do not match the sha256"):
        lay_out_bundle(source, dest, contract)
    assert sorted(p.name for p in dest.iterdir()) == ["modelfn.yaml"]


def test_build_bundles_the_laid_out_files_and_records_them(function_copy, tmp_path) -> None:
    source = function_copy(deploy={"weights": "external", "verify": "build"})
    stage = tmp_path / "stage"
    copy_sources(FunctionLayout.read(source), stage)
    record = json.loads((stage / ".modelfn" / "verified.json").read_text())["files"]
    assert set(record) == {"model.onnx", "model.onnx.data"}
    assert record["model.onnx.data"]["sha256"] == sha256_of(stage / "model.onnx.data")
    contract = load_contract(stage)
    loaded = load_model(stage, contract, Settings(), *local_artifact(contract, stage))
    assert next(iter(loaded.phases)) == "fetch(local, verified at build)"


def test_a_small_model_is_bundled_as_it_is_by_default(function_copy, tmp_path) -> None:
    source = function_copy()
    stage = tmp_path / "stage"
    copy_sources(FunctionLayout.read(source), stage)
    assert not (stage / "model.onnx.data").exists()
    assert sha256_of(stage / "model.onnx") == sha256_of(source / "model.onnx")


def test_push_uploads_the_laid_out_version_and_serves_it(function_copy, tmp_path) -> None:
    source = function_copy(deploy={"weights": "external"})
    registry = tmp_path / "registry"
    registry.mkdir()
    runner = CliRunner()
    first = runner.invoke(cli, ["push", str(source), "--registry", str(registry)])
    assert first.exit_code == 0, first.output
    assert "weights laid out for loading" in first.output
    again = runner.invoke(cli, ["push", str(source), "--registry", str(registry)])
    assert again.exit_code == 0 and "already present" in again.output  # the layout is reproducible
    opened = Registry.open(str(registry))
    name, version = load_contract(source).name, load_contract(source).version
    stored = opened.contract(name, version)
    assert set(stored.verified_artifact().files) == {"model.onnx.data"}
    assert any(path.name == "model.onnx.data" for path in registry.rglob("*"))
    pulled = load_model(source, stored, Settings(cache_dir=str(tmp_path / "cache")), opened.store,
                        opened.artifact_key(stored))  # fmt: skip
    local = load_model(source, load_contract(source), Settings(), *local_artifact(load_contract(source), source))
    x = {spec.name: np.ones((1, *spec.shape[1:]), dtype=np.float32) for spec in stored.inputs}
    expected, actual = local.infer(x), pulled.infer(x)
    assert expected.keys() == actual.keys() and all(np.array_equal(expected[k], actual[k]) for k in expected)
    # The user's folder is left as it was: the layout was written to a scratch copy.
    assert not (source / "model.onnx.data").exists()
    assert sha256_of(source / "model.onnx") == load_contract(source).verified_artifact().sha256
