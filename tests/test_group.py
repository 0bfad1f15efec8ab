"""Several models in one function: routing, lazy loading, LRU release under a memory budget."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import requests
from conftest import make_client
from helpers import DIGITS, ROOT, running

from modelfn.runtime.cache import GLOBAL_CACHE

MAIN = (
    'from modelfn.adapters.gcf import http_function\n\nhandle = http_function(__file__, models=["digits", "cancer"])\n'
)
DIGIT = {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]}


@pytest.fixture
def zoo(tmp_path):
    folder = tmp_path / "zoo"
    folder.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", ".modelfn", "train.py")
    shutil.copytree(DIGITS, folder / "digits", ignore=ignore)
    shutil.copytree(ROOT / "functions" / "cancer", folder / "cancer", ignore=ignore)
    (folder / "main.py").write_text(MAIN)
    return folder


def loads(folder, name: str) -> int:
    return sum(count for key, count in GLOBAL_CACHE.loads_started.items() if key.startswith(f"{folder / name}:"))


def test_each_model_is_routed_and_loaded_on_its_first_request(zoo) -> None:
    client = make_client(zoo)
    assert client.get("/v2/models/cancer").get_json()["inputs"][0]["name"] == "features"
    assert loads(zoo, "digits") == loads(zoo, "cancer") == 0  # metadata loads nothing
    assert client.post("/v2/models/digits/infer", json=DIGIT).status_code == 200
    assert (loads(zoo, "digits"), loads(zoo, "cancer")) == (1, 0)
    with np.load(ROOT / "functions/cancer/validation.npz") as data:
        row = data["features"][:1].tolist()
    answer = client.post("/models/cancer/predict", json={"features": row})
    assert answer.status_code == 200 and answer.headers["X-Model-Version"] == "1"
    assert client.post("/v1/models/cancer:predict", json={"instances": row}).status_code == 200
    assert client.get("/v2/health/ready").get_json() == {"ready": True}


def test_names_that_are_not_served(zoo) -> None:
    client = make_client(zoo)
    hint = client.post("/predict", json={})
    assert hint.status_code == 404 and "serves several models (digits, cancer)" in hint.get_json()["error"]
    unknown = client.post("/v2/models/iris/infer", json=DIGIT)
    assert unknown.status_code == 404 and "serves digits, cancer" in unknown.get_json()["error"]


def test_least_recently_used_models_are_released_over_the_budget(zoo, monkeypatch) -> None:
    monkeypatch.setenv("MODELFN_MEMORY_BUDGET_MB", "0.00001")  # ~10 bytes: only the model in use fits
    client = make_client(zoo)
    with np.load(ROOT / "functions/cancer/validation.npz") as data:
        cancer = {"features": data["features"][:1].tolist()}
    assert client.post("/v2/models/digits/infer", json=DIGIT).status_code == 200
    assert client.post("/models/cancer/predict", json=cancer).status_code == 200  # digits is released
    assert client.post("/models/cancer/predict", json=cancer).status_code == 200  # cancer stays
    assert client.post("/v2/models/digits/infer", json=DIGIT).status_code == 200  # digits reloads
    assert (loads(zoo, "digits"), loads(zoo, "cancer")) == (2, 1)


def test_without_a_budget_nothing_is_released(zoo) -> None:
    client = make_client(zoo)
    for _ in range(2):
        client.post("/v2/models/digits/infer", json=DIGIT)
        client.post("/models/cancer/predict", json={"features": [[0.0] * 30]})
    assert (loads(zoo, "digits"), loads(zoo, "cancer")) == (1, 1)


@pytest.mark.slow
def test_a_group_over_http(zoo, tmp_path) -> None:
    with running(zoo, tmp_path / "serve.log") as server:
        digits = requests.post(f"{server.url}/v2/models/digits/infer", json=DIGIT, timeout=60)
        cancer = requests.post(f"{server.url}/models/cancer/predict", json={"features": [[0.0] * 30]}, timeout=60)
    assert digits.status_code == cancer.status_code == 200


def test_openapi_documents_each_model_of_the_group(zoo) -> None:
    document = make_client(zoo).get("/openapi.json").get_json()
    [name] = document["paths"]["/v2/models/{name}/infer"]["post"]["parameters"]
    assert name["schema"]["enum"] == ["digits", "cancer"]
