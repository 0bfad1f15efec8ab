"""``modelfn check`` runs the Python hooks and their JavaScript twin (under Node) and fails when they disagree."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import DIGITS, HELPDESK, copy_function, edit_contract

from modelfn.cli import cli
from modelfn.contract import compile_contract
from modelfn.errors import ContractError
from modelfn.tooling.heldout import requests_of


def check(folder) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["check", str(folder)])
    return result.exit_code, result.output


@pytest.mark.parametrize(("folder", "count"), [(DIGITS, 365), (HELPDESK, 136)], ids=["digits", "helpdesk"])
def test_the_example_functions_hooks_agree_on_every_held_out_request(folder, count) -> None:
    code, output = check(folder)
    assert code == 0, output
    assert f"hooks.js and the Python hooks agree: {count} requests (4 refused by both)" in output


def test_a_twin_that_computes_differently_fails_the_check_naming_the_request(tmp_path) -> None:
    folder = copy_function(tmp_path, HELPDESK)
    hooks = folder / "hooks.js"
    # Hash one bucket further along: the tensors no longer match Python's.
    hooks.write_text(hooks.read_text().replace("crc32(token) % DIMENSIONS", "(crc32(token) + 1) % DIMENSIONS"))
    code, output = check(folder)
    assert code != 0
    assert "the JavaScript hooks disagree" in output and "pre: features: values differ" in output
    assert 'request 1 ({"text": "How do I deploy my model to Cloud Run?"})' in output


def test_an_answer_that_differs_fails_the_check(tmp_path) -> None:
    folder = copy_function(tmp_path, DIGITS)
    hooks = folder / "hooks.js"
    hooks.write_text(hooks.read_text().replace("digit: Number(label)", "digit: Number(label) % 9"))
    code, output = check(folder)
    assert code != 0 and "post: answer.digit: 0 != 9" in output


def test_a_twin_that_accepts_what_python_refuses_fails_the_check(tmp_path) -> None:
    folder = copy_function(tmp_path, DIGITS)
    hooks = folder / "hooks.js"
    hooks.write_text(hooks.read_text().replace("if (value < 0 || value > 16)", "if (value < 0 || value > 17)"))
    requests = folder / "heldout.jsonl"
    requests.write_text(json.dumps({"image": [[17] * 8] * 8}) + "\n")
    code, output = check(folder)
    assert code != 0 and "only the Python pre hook refuses it" in output


def test_a_broken_twin_or_request_file_is_a_clear_error(tmp_path) -> None:
    folder = copy_function(tmp_path, DIGITS)
    (folder / "hooks.js").write_text("export function preprocess(payload) { return {} }\n")  # no postprocess
    code, output = check(folder)
    assert code != 0 and "exports no function postprocess" in output
    (folder / "heldout.jsonl").write_text('{"image": [[1]]}\nnot json\n')
    with pytest.raises(ContractError, match=r"heldout.jsonl:2: not JSON"):
        requests_of(folder, compile_contract(folder))
    edit_contract(folder, hooks={"javascript": "hooks.js"})
    with pytest.raises(ContractError, match="twin of `pre` and `post`"):
        compile_contract(folder)


def test_the_committed_held_out_requests_are_the_training_splits_held_out_part(heldout) -> None:
    x_test, _ = heldout
    digits = [json.loads(line)["image"] for line in (DIGITS / "heldout.jsonl").read_text().splitlines()]
    assert np.array_equal(np.array(digits, dtype=np.float32).reshape(-1, 64), x_test)
    spec = importlib.util.spec_from_file_location("helpdesk_train", HELPDESK / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    _, texts, _, _, _ = train.split()
    assert [json.loads(line)["text"] for line in (HELPDESK / "heldout.jsonl").read_text().splitlines()] == texts
