"""API keys in the function: hashed at rest, compared in constant time, scoped, revocable live."""

from __future__ import annotations

import time

import pytest
import requests
from click.testing import CliRunner
from credentials import add_key
from helpers import DIGITS, running

from modelfn.cli import cli
from modelfn.errors import Forbidden, Unauthorized
from modelfn.security import api_keys as auth
from modelfn.security.api_keys import KeyRing, parse_keys

IMAGE = [[0] * 8] * 8


def test_the_file_holds_salted_hashes_never_the_key(tmp_path) -> None:
    keys_file = tmp_path / "keys"
    key = add_key(keys_file, "ci", "digits,cancer")
    assert key.startswith("mfn_ci_") and len(key) == len("mfn_ci_") + 43
    text = keys_file.read_text()
    assert key.split("_", 2)[2] not in text
    [entry] = parse_keys(text, "keys").values()
    assert entry.models == {"digits", "cancer"} and len(entry.salt) == 32
    assert add_key(keys_file, "other", "digits") != key  # every key is new
    listed = CliRunner().invoke(cli, ["keys", "list", "--file", str(keys_file)])
    assert listed.output.splitlines() == ["ci  cancer,digits", "other  digits"]


def test_keys_are_checked_by_secret_scope_and_header(tmp_path) -> None:
    keys_file = tmp_path / "keys"
    key = add_key(keys_file, "ci", "digits")
    ring = KeyRing(keys_file)
    ring.check({"x-api-key": key}, "digits")
    ring.check({"Authorization": f"Bearer {key}"}, "digits")
    wrong_secret = key[:-1] + ("A" if key[-1] != "A" else "B")
    for headers in ({}, {"x-api-key": wrong_secret}, {"x-api-key": "mfn_nobody_" + key[-43:]}, {"x-api-key": "x"},
                    {"Authorization": f"Basic {key}"}):  # fmt: skip
        with pytest.raises(Unauthorized) as caught:
            ring.check(headers, "digits")
        assert caught.value.message == "missing or invalid API key"  # the same, whatever was wrong
        assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")
    with pytest.raises(Forbidden):
        ring.check({"x-api-key": key}, "cancer")


def test_a_malformed_or_missing_keys_file_admits_no_key(tmp_path, caplog) -> None:
    good = tmp_path / "good"
    key = add_key(good, "ci", "*")
    (tmp_path / "keys").write_text(good.read_text() + "ci sha256:abc digits\n")  # one good line, one broken
    for path in (tmp_path / "keys", tmp_path / "missing"):
        ring = KeyRing(path)
        with pytest.raises(Unauthorized) as caught:
            ring.check({"x-api-key": key}, "digits")
        assert caught.value.message == "missing or invalid API key" and str(tmp_path) not in caught.value.message
    assert "keys:2: the hash must be" in caplog.text and "missing" in caplog.text  # the log says why


BROKEN_EDITS = {
    "malformed": lambda path: path.write_text("app sha256:12 digits\n"),
    "truncated": lambda path: path.write_text(path.read_text()[:40]),
    "not UTF-8": lambda path: path.write_bytes(b"\xff\xfe" + path.read_bytes()),
    "a directory": lambda path: (path.unlink(), path.mkdir()),
    "removed": lambda path: path.unlink(),
    "empty": lambda path: path.write_text(""),
}


@pytest.mark.slow
def test_a_keys_file_broken_while_running_refuses_everyone_the_same_way_until_fixed(tmp_path) -> None:
    keys_file = tmp_path / "keys"
    key = add_key(keys_file, "app", "digits")
    good = keys_file.read_text()
    with running(DIGITS, tmp_path / "serve.log", env={"MODELFN_API_KEYS_FILE": str(keys_file)}) as server:
        infer = f"{server.url}/v2/models/digits/infer"
        body = {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]}
        assert requests.post(infer, json=body, headers={"x-api-key": key}, timeout=30).status_code == 200
        for what, breaks in BROKEN_EDITS.items():
            breaks(keys_file)
            time.sleep(auth._CHECK_EVERY_S + 0.2)
            for _ in range(5):  # every request, not only the first after the edit
                refused = requests.post(infer, json=body, headers={"x-api-key": key}, timeout=30)
                assert refused.status_code == 401, what
                assert refused.json() == {"error": "missing or invalid API key"}, what
            if keys_file.is_dir():
                keys_file.rmdir()
            keys_file.write_text(good)
            time.sleep(auth._CHECK_EVERY_S + 0.2)
            assert requests.post(infer, json=body, headers={"x-api-key": key}, timeout=30).status_code == 200, what
        log = server.log()
    for said in ("is unusable", "not a regular file", "can't decode", "is usable again", "holds no keys"):
        assert said in log


def test_revoking_takes_effect_without_a_restart(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(auth, "_CHECK_EVERY_S", 0.0)
    keys_file = tmp_path / "keys"
    key = add_key(keys_file, "ci", "*")
    ring = KeyRing(keys_file)
    ring.check({"x-api-key": key}, "digits")
    assert CliRunner().invoke(cli, ["keys", "revoke", "ci", "--file", str(keys_file)]).exit_code == 0
    with pytest.raises(Unauthorized):
        ring.check({"x-api-key": key}, "digits")


@pytest.mark.slow
def test_a_live_function_requires_keys_except_for_health(tmp_path) -> None:
    keys_file = tmp_path / "keys"
    digits_key = add_key(keys_file, "app", "digits")
    cancer_key = add_key(keys_file, "other", "cancer")
    env = {"MODELFN_API_KEYS_FILE": str(keys_file)}
    with running(DIGITS, tmp_path / "serve.log", env=env) as server:
        infer = f"{server.url}/v2/models/digits/infer"
        body = {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]}
        assert requests.get(f"{server.url}/v2/health/ready", timeout=30).status_code in (200, 503)
        assert requests.get(f"{server.url}/v2/health/live", timeout=5).status_code == 200

        refused = requests.post(infer, json=body, timeout=30)
        assert refused.status_code == 401 and refused.json() == {"error": "missing or invalid API key"}
        assert requests.post(infer, json=body, headers={"x-api-key": digits_key}, timeout=30).status_code == 200
        other = requests.post(infer, json=body, headers={"x-api-key": cancer_key}, timeout=30)
        assert other.status_code == 403 and other.json() == {"error": "this API key may not use this model"}
        # POST /predict names no model: the function's own (digits) decides the scope.
        predict = f"{server.url}/predict"
        assert requests.post(predict, json={"image": IMAGE}, headers={"Authorization": f"Bearer {digits_key}"},
                             timeout=30).status_code == 200  # fmt: skip
        assert (
            requests.post(predict, json={"image": IMAGE}, headers={"x-api-key": cancer_key}, timeout=30).status_code
            == 403
        )

        assert CliRunner().invoke(cli, ["keys", "revoke", "app", "--file", str(keys_file)]).exit_code == 0
        time.sleep(auth._CHECK_EVERY_S + 0.2)
        assert requests.post(infer, json=body, headers={"x-api-key": digits_key}, timeout=30).status_code == 401
