from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import DIGITS

from modelfn.contract import load_contract, parse_contract, resolve_local_artifact
from modelfn.errors import ContractError

VALID = yaml.safe_load((DIGITS / "modelfn.yaml").read_text())


def contract_text(**changes) -> str:
    data = {**VALID, **changes}
    return yaml.safe_dump({k: v for k, v in data.items() if v is not None})


def test_digits_contract_loads_with_documented_accuracy() -> None:
    contract = load_contract(DIGITS)
    assert (contract.name, contract.version, contract.framework) == ("digits", "1", "onnx")
    assert [s.name for s in contract.inputs] == ["pixels"]
    assert contract.docs.metrics["heldout_accuracy"] >= 0.95
    assert contract.platform == "onnx_onnxv1"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"version": 1}, "field `version`: expected `str`, got `int`"),
        ({"framework": "mxnet"}, "field `framework`: invalid enum value 'mxnet'"),
        ({"framework": "pytorch"}, "a pytorch artifact must end in one of ['.pt', '.pt2'], got 'model.onnx'"),
        ({"name": "Digits!"}, "field `name`: expected `str` matching regex"),
        ({"artifact": {"uri": "model.onnx", "sha256": "abc"}}, "field `artifact.sha256`"),
        ({"artifact": None}, "framework 'onnx' needs `artifact`"),
        ({"steps": [{"model": "x", "inputs": {"a": "pixels"}, "outputs": {"b": "c"}}]}, "`steps` belong to"),
        ({"batching": {"max_batch_size": 1}}, "field `batching.max_batch_size`: expected `int` >= 2"),
        ({"batching": {"max_wait_ms": -1}}, "field `batching.max_wait_ms`: expected `float` >= 0"),
        (
            {"batching": {}, "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64]}]},
            "so it must be -1 in every tensor; inputs ['pixels'] do not start with -1",
        ),
        ({"colour": "blue"}, "object contains unknown field `colour`"),
        ({"inputs": [{"name": "x", "datatype": "FP33", "shape": [1]}]}, "field `inputs[0].datatype`"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-2]}]}, "field `inputs[0].shape[0]`"),
        ({"inputs": []}, "field `inputs`: expected `array` of length >= 1"),
        ({"hooks": {"pre": "hooks.py"}}, "field `hooks.pre`"),
        (
            {"outputs": [{"name": "y", "datatype": "FP32", "shape": [1]}] * 2},
            "outputs has duplicate tensor names: y",
        ),
    ],
)
def test_invalid_contract_names_file_and_field(changes: dict, expected: str) -> None:
    with pytest.raises(ContractError) as caught:
        parse_contract(contract_text(**changes), source="functions/x/modelfn.yaml")
    assert str(caught.value).startswith("functions/x/modelfn.yaml: ")
    assert expected in str(caught.value)


def test_yaml_syntax_error_is_reported_with_its_line() -> None:
    with pytest.raises(ContractError, match=r"(?s)not valid YAML.*line 3, column 1"):
        parse_contract("name: digits\ninputs: [\n", source="m.yaml")


def test_missing_contract_file(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="cannot read the contract"):
        load_contract(tmp_path)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("../model.onnx", "points outside the function folder"),
        ("sub/../../x.onnx", "points outside the function folder"),
        ("file://relative/model.onnx", "must be absolute"),
        ("http://example.com/model.onnx", "expected a path relative to the function folder"),
    ],
)
def test_artifact_uri_cannot_escape_the_folder(tmp_path: Path, uri: str, message: str) -> None:
    contract = parse_contract(contract_text(artifact={"uri": uri, "sha256": "0" * 64}))
    with pytest.raises(ContractError, match=message):
        resolve_local_artifact(contract, tmp_path)


def test_artifact_paths_resolve(tmp_path: Path) -> None:
    relative = parse_contract(contract_text(artifact={"uri": "models/m.onnx", "sha256": "0" * 64}))
    assert resolve_local_artifact(relative, tmp_path) == (tmp_path / "models/m.onnx").resolve()
    absolute = parse_contract(contract_text(artifact={"uri": "file:///srv/m.onnx", "sha256": "0" * 64}))
    assert resolve_local_artifact(absolute, tmp_path) == Path("/srv/m.onnx")


def test_compiled_contract_is_used_only_while_fresh(function_copy) -> None:
    from modelfn.contract import COMPILED_FILE, compile_contract

    folder = function_copy()
    (folder / COMPILED_FILE).unlink(missing_ok=True)
    assert compile_contract(folder) == load_contract(folder)
    assert (folder / COMPILED_FILE).is_file()

    # The YAML changes: the stale compiled copy must not win.
    text = (folder / "modelfn.yaml").read_text().replace('version: "1"', 'version: "2"')
    (folder / "modelfn.yaml").write_text(text)
    assert load_contract(folder).version == "2"

    # A corrupt compiled copy is ignored, never trusted.
    (folder / COMPILED_FILE).write_text('{"source_sha256": "x", "contract": 1}')
    assert load_contract(folder).version == "2"
    assert compile_contract(folder).version == "2"


def test_a_fresh_compiled_contract_keeps_yaml_off_the_cold_path(function_copy) -> None:
    import subprocess
    import sys

    from modelfn.contract import compile_contract

    folder = function_copy()
    compile_contract(folder)
    probe = (
        "import sys; from modelfn.contract import load_contract; "
        f"load_contract({str(folder)!r}); print('yaml' in sys.modules)"
    )
    assert (
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
    (folder / "modelfn.yaml").write_text((folder / "modelfn.yaml").read_text() + "\n# edited\n")
    assert (
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
        == "True"
    )


# -- pipelines -------------------------------------------------------------------------------------

PIPELINE = {
    "name": "ensemble",
    "version": "1",
    "framework": "pipeline",
    "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}],
    "outputs": [
        {"name": "label", "datatype": "INT64", "shape": [-1]},
        {"name": "mlp_label", "datatype": "INT64", "shape": [-1]},
    ],
    "docs": {"description": "a chain and a fan-out"},
    "steps": [
        {"model": "pca", "inputs": {"x": "pixels"}, "outputs": {"components": "features"}},
        {"model": "classifier", "inputs": {"features": "features"}, "outputs": {"label": "label"}},
        {"model": "digits", "inputs": {"pixels": "pixels"}, "outputs": {"label": "mlp_label"}},
    ],
}


def pipeline_text(**changes) -> str:
    return yaml.safe_dump({k: v for k, v in {**PIPELINE, **changes}.items() if v is not None})


def test_a_pipeline_chains_and_fans_out() -> None:
    contract = parse_contract(pipeline_text())
    assert contract.artifact is None and contract.platform == "ensemble"
    assert [step.model for step in contract.steps] == ["pca", "classifier", "digits"]
    with pytest.raises(ContractError, match="is a pipeline: it has no artifact"):
        contract.verified_artifact()


def step(model: str, inputs: dict, outputs: dict) -> dict:
    return {"model": model, "inputs": inputs, "outputs": outputs}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"steps": None}, "a pipeline needs `steps`"),
        ({"artifact": {"uri": "m.onnx", "sha256": "0" * 64}}, "a pipeline has no `artifact`"),
        ({"steps": [step("pca", {"x": "nowhere"}, {"y": "label"})]}, "reads ['nowhere'], which no pipeline input"),
        (  # a step may only read what earlier steps produced: no cycles by construction
            {"steps": [step("a", {"x": "later"}, {"y": "label"}), step("b", {"x": "pixels"}, {"y": "later"})]},
            "steps[0] (a): reads ['later']",
        ),
        ({"steps": [step("a", {"x": "pixels"}, {"y": "pixels"})]}, "publishes ['pixels'] again"),
        ({"steps": [step("a", {"x": "pixels"}, {"y": "label", "z": "label"})]}, "publishes ['label'] again"),
        ({"steps": [step("a", {"x": "pixels"}, {"y": "label"})]}, "outputs ['mlp_label'] are produced by no step"),
        ({"steps": [step("ensemble", {"x": "pixels"}, {"y": "label"})]}, "a pipeline cannot run itself"),
        ({"steps": [step("a", {}, {"y": "label"})]}, "field `steps[0].inputs`"),
        ({"steps": [step("Bad Name", {"x": "pixels"}, {"y": "label"})]}, "field `steps[0].model`"),
    ],
)
def test_invalid_pipelines_name_the_step(changes: dict, expected: str) -> None:
    with pytest.raises(ContractError) as caught:
        parse_contract(pipeline_text(**changes), source="p/modelfn.yaml")
    assert expected in str(caught.value)


def test_batching_is_declared_per_model() -> None:
    contract = parse_contract(contract_text(batching={"max_batch_size": 64, "max_wait_ms": 2}))
    assert (contract.batching.max_batch_size, contract.batching.max_wait_ms) == (64, 2.0)
    assert parse_contract(contract_text()).batching is None
    with pytest.raises(ContractError, match="`batching` belongs to the models a pipeline runs"):
        parse_contract(pipeline_text(batching={}))
