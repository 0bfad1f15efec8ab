"""``modelfn init``: a contract written from each example artifact agrees with the committed one and checks."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from helpers import ROOT

from modelfn.cli import cli
from modelfn.contract import load_contract
from modelfn.errors import ContractError
from modelfn.tooling.init import init_function

FUNCTIONS = ROOT / "functions"
#: Every artifact under functions/, with whether the framework binds outputs by name (else by order).
ARTIFACTS = [
    ("digits/model.onnx", True),
    ("cancer/model.skops", True),
    ("helpdesk/model.onnx", True),
    ("digits-ensemble/pca/model.onnx", True),
    ("digits-ensemble/mlp/model.onnx", True),
    ("digits-ensemble/logreg/model.onnx", True),
    pytest.param("digits-torch/model.pt2", False, marks=pytest.mark.slow),
    pytest.param("digits-keras/model.keras", False, marks=pytest.mark.slow),
]


def fill_in_docs(folder: Path) -> None:
    path = folder / "modelfn.yaml"
    contract = yaml.safe_load(path.read_text())
    contract["docs"]["description"] = "Written by modelfn init in a test."
    path.write_text(yaml.safe_dump(contract, sort_keys=False))


def tensors(specs, *, names: bool) -> list[tuple]:
    return [((spec.name,) if names else ()) + (spec.datatype, list(spec.shape)) for spec in specs]


@pytest.mark.parametrize(("relative", "named_outputs"), ARTIFACTS)
def test_init_round_trips_every_example_artifact(tmp_path, relative: str, named_outputs: bool) -> None:
    artifact = FUNCTIONS / relative
    committed = load_contract(artifact.parent)
    out = tmp_path / "fn"
    runner = CliRunner()
    written = runner.invoke(cli, ["init", str(artifact), "--name", committed.name, "--out", str(out)])
    assert written.exit_code == 0, written.output
    unfilled = runner.invoke(cli, ["check", str(out)])
    assert unfilled.exit_code != 0 and "field `docs.description` is empty" in unfilled.output
    assert "docs.training_data" in unfilled.output and "inputs[0].description" in unfilled.output
    fill_in_docs(out)
    checked = runner.invoke(cli, ["check", str(out)])
    assert checked.exit_code == 0, checked.output
    assert "example   POST /predict ->" in checked.output  # the example of zeros ran through the hooks
    contract = load_contract(out)
    assert (contract.framework, contract.verified_artifact().sha256) == (
        committed.framework,
        committed.verified_artifact().sha256,
    )
    assert tensors(contract.inputs, names=True) == tensors(committed.inputs, names=True)
    assert tensors(contract.outputs, names=named_outputs) == tensors(committed.outputs, names=named_outputs)


def test_init_never_writes_into_a_folder_that_exists(tmp_path) -> None:
    out = tmp_path / "fn"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ContractError, match="exists; modelfn init writes a new folder only"):
        init_function(FUNCTIONS / "digits" / "model.onnx", "digits", out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_a_pickle_is_not_unpickled_to_read_its_signature(tmp_path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"anything": 1}))
    with pytest.raises(ContractError, match="means unpickling it, which runs its code"):
        init_function(path, "m", tmp_path / "fn")
    assert not (tmp_path / "fn").exists()


def test_an_unknown_file_is_refused_naming_what_is_served(tmp_path) -> None:
    path = tmp_path / "model.h5"
    path.write_bytes(b"\x89HDF")
    with pytest.raises(ContractError, match=r"not a model file modelfn serves; it serves \["):
        init_function(path, "m", tmp_path / "fn")


def test_the_hooks_skeleton_checks_what_callers_send(tmp_path) -> None:
    from modelfn.errors import InvalidInput
    from modelfn.runtime.model import load_model, local_artifact
    from modelfn.settings import Settings

    out = init_function(FUNCTIONS / "digits" / "model.onnx", "digits", tmp_path / "fn")
    fill_in_docs(out)
    contract = load_contract(out)
    model = load_model(out, contract, Settings(), *local_artifact(contract, out))
    answer = model.predict_json({"pixels": [[0.0] * 64, [16.0] * 64]})
    assert sorted(answer) == ["label", "probabilities"] and len(answer["label"]) == 2
    for bad, message in (
        ({"pixels": [[0.0] * 63]}, "must be shaped Nx64"),
        ({"pixels": [["5"] * 64]}, "pixels"),
        ({}, "pixels"),
    ):
        with pytest.raises(InvalidInput, match=message):
            model.predict_json(bad)


def test_an_onnx_model_with_external_data_is_copied_and_pinned_file_by_file(tmp_path) -> None:
    """``onnx.save_model(..., save_as_external_data=True)``: init copies the .data files and pins each."""
    from models import write_pinned_external_function

    source = write_pinned_external_function(tmp_path / "saved", location="weights/model.data", pin=False)
    runner = CliRunner()
    done = runner.invoke(cli, ["init", str(source / "model.onnx"), "--name", "big", "--out", str(tmp_path / "big"),
                               "--description", "y = x W, its weight kept outside the model file"])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "model.onnx, weights/model.data" in done.output
    contract = load_contract(tmp_path / "big")
    data = (tmp_path / "big" / "weights" / "model.data").read_bytes()
    assert data == (source / "weights" / "model.data").read_bytes()
    import hashlib

    assert contract.verified_artifact().files == {"weights/model.data": hashlib.sha256(data).hexdigest()}
    assert contract.docs.description.startswith("y = x W")
    checked = runner.invoke(cli, ["check", str(tmp_path / "big")])
    assert checked.exit_code == 0 and checked.output.rstrip().endswith("ok"), checked.output


def test_the_compiled_contract_is_readable_by_an_images_other_user(tmp_path) -> None:
    """Written 0600, a non-root user could not read it: a verify: build bundle re-hashed its model at each start."""
    import shutil

    from helpers import DIGITS

    from modelfn.contract import compile_contract

    folder = tmp_path / "digits"
    shutil.copytree(DIGITS, folder, ignore=shutil.ignore_patterns(".modelfn"))
    compile_contract(folder)
    assert (folder / ".modelfn" / "contract.json").stat().st_mode & 0o777 == 0o644


def test_digests_reads_the_contracts_artifact_and_never_prints_a_traceback(tmp_path) -> None:
    from models import write_pinned_external_function

    folder = write_pinned_external_function(tmp_path / "f", location="w.data")
    contract = yaml.safe_load((folder / "modelfn.yaml").read_text())
    (folder / "model.onnx").rename(folder / "renamed.onnx")
    contract["artifact"]["uri"] = "renamed.onnx"
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract))
    runner = CliRunner()
    done = runner.invoke(cli, ["digests", str(folder)])
    assert done.exit_code == 0 and "uri: renamed.onnx" in done.output and "w.data: " in done.output, done.output
    missing = runner.invoke(cli, ["digests", str(folder), "--model", "gone.onnx"])
    assert missing.exit_code == 1 and "gone.onnx: no such file; name the model file with --model" in missing.output
    assert missing.exception is None or isinstance(missing.exception, SystemExit)


def test_a_pipeline_fitted_on_a_dataframe_becomes_a_table_with_no_hooks(tmp_path) -> None:
    """functions/churn's pipeline, never retrained: init reads its columns, asks for what it cannot read."""
    artifact, out, row = FUNCTIONS / "churn" / "model.skops", tmp_path / "churn", tmp_path / "row.json"
    runner = CliRunner()
    untrusted = runner.invoke(cli, ["init", str(artifact), "--name", "churn", "--out", str(out)])
    assert untrusted.exit_code == 1 and "pass --trust numpy.dtype" in untrusted.output
    untyped = runner.invoke(
        cli, ["init", str(artifact), "--name", "churn", "--out", str(out), "--trust", "numpy.dtype"]
    )
    assert untyped.exit_code == 1 and "types of the columns ['tenure', 'monthly']" in untyped.output
    assert "--example row.json" in untyped.output and "Traceback" not in untyped.output and not out.exists()
    row.write_text('{"tenure": 30, "plan": "family", "contract": "one-year", "monthly": 58.0}')
    written = runner.invoke(cli, ["init", str(artifact), "--name", "churn", "--out", str(out),
                                  "--trust", "numpy.dtype", "--example", str(row)])  # fmt: skip
    assert written.exit_code == 0, written.output
    assert not (out / "hooks.py").exists()
    fill_in_docs(out)
    checked = runner.invoke(cli, ["check", str(out)])
    assert checked.exit_code == 0, checked.output
    contract, committed = load_contract(out), load_contract(FUNCTIONS / "churn")
    assert contract.table is not None and contract.hooks.pre is None and contract.example == json.loads(row.read_text())
    assert tensors(contract.inputs, names=True) == tensors(committed.inputs, names=True)
    assert tensors(contract.outputs, names=True) == tensors(committed.outputs, names=True)
    # The charge goes through the numbers' imputer: a missing one is the model's to fill, as committed.
    # tenure is imputed too, but only a float column may be null in a contract.
    assert contract.table.nullable == committed.table.nullable == ["monthly"]


def test_an_onnx_model_with_one_input_per_column_becomes_a_table_of_arrays(tmp_path) -> None:
    """The churn pipeline converted to ONNX (string and number inputs, one value per row each): init reads
    the columns' types from the graph, writes table: {as: arrays} and no hooks, takes --example as the
    example (a blank one otherwise, which it asks to replace), and the folder checks."""
    from modelfn.tooling.convert import convert

    convert(FUNCTIONS / "churn", tmp_path / "onnx")
    artifact, row = tmp_path / "onnx" / "model.onnx", tmp_path / "row.json"
    row.write_text(json.dumps({"tenure": 12, "plan": "pro", "contract": "month-to-month", "monthly": 45.5}))
    runner = CliRunner()
    blank = runner.invoke(cli, ["init", str(artifact), "--name", "blank", "--out", str(tmp_path / "blank")])
    assert blank.exit_code == 0 and "and the example (a real row" in blank.output, blank.output
    assert load_contract(tmp_path / "blank").example == {"tenure": 0, "plan": "", "contract": "", "monthly": 0}
    written = runner.invoke(cli, ["init", str(artifact), "--name", "churn", "--out", str(tmp_path / "churn"),
                                  "--example", str(row)])  # fmt: skip
    assert written.exit_code == 0, written.output
    contract = load_contract(tmp_path / "churn")
    assert contract.table is not None and contract.table.pass_as == "arrays" and contract.hooks.pre is None
    assert tensors(contract.inputs, names=True) == tensors(load_contract(FUNCTIONS / "churn").inputs, names=True)
    assert contract.example == json.loads(row.read_text()) and not (tmp_path / "churn" / "hooks.py").exists()
    fill_in_docs(tmp_path / "churn")
    checked = runner.invoke(cli, ["check", str(tmp_path / "churn")])
    assert checked.exit_code == 0, checked.output
    wrong = runner.invoke(cli, ["init", str(FUNCTIONS / "digits" / "model.onnx"), "--name", "d",
                                "--out", str(tmp_path / "d"), "--example", str(row)])  # fmt: skip
    assert wrong.exit_code == 1 and "--example is for a model that takes rows" in wrong.output


def test_a_genai_model_builder_folder_becomes_a_generative_function(tmp_path) -> None:
    """The folder functions/chat serves, as the model builder wrote it: copied, every file pinned, checked."""
    source = FUNCTIONS / "chat" / "model"
    result = CliRunner().invoke(cli, ["init", str(source), "--name", "bot", "--out", str(tmp_path / "bot"),
                                      "--description", "a test"])  # fmt: skip
    assert result.exit_code == 0, result.output
    contract = load_contract(tmp_path / "bot")
    artifact = contract.verified_artifact()
    assert (contract.framework, artifact.uri) == ("genai", "model/model.onnx")
    assert set(artifact.files) == {p.name for p in source.iterdir()} - {"model.onnx"}
    assert contract.generation is not None and contract.generation.chat_template == "chat_template.jinja"
    assert contract.generation.max_prompt_tokens == 1024  # half the 2,048-token context
    checked = CliRunner().invoke(cli, ["check", str(tmp_path / "bot")])
    assert checked.exit_code == 0 and '"text_output"' in checked.output, checked.output
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "genai_config.json").write_text('{"model": {"decoder": {"filename": "../elsewhere.onnx"}}}')
    refused = CliRunner().invoke(cli, ["init", str(broken), "--name", "bad", "--out", str(tmp_path / "bad")])
    assert refused.exit_code == 1 and "which is not in the folder" in refused.output
    assert "Traceback" not in refused.output
