"""``modelfn build --target web``: the static site runs the models in headless Chromium, offline.

The site of each example function is built once (onnxruntime-web from ``make tools``), served by
``modelfn site``'s server and opened in Debian's Chromium through Playwright. Its answers are
compared with the function's own (``POST /predict`` in-process) on the whole held-out set, and
every request the page makes is recorded: all go to the site, and none follows the page's load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import yaml
from conftest import make_client
from helpers import ARTIFACTS, DIGITS, HELPDESK, ROOT, copy_function, draw_one, draw_zero

from modelfn.errors import ContractError
from modelfn.tooling.static_site import BackgroundSite
from modelfn.tooling.web_bundle import build_web

pytestmark = pytest.mark.slow
#: Every body answered in the page, one after the other, and the model's outputs (before the post hook).
ALL = """async ([name, bodies]) => {
  const out = [];
  for (const body of bodies) {
    out.push([await window.modelfn.predict(name, body), await window.modelfn.outputs(name, body)]);
  }
  return out;
}"""


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("web")
    return {folder.name: Path(build_web(folder, out).output) for folder in (DIGITS, HELPDESK)}


def heldout(folder: Path) -> list[Any]:
    return [json.loads(line) for line in (folder / "heldout.jsonl").read_text().splitlines()]


def open_site(browser: Any, site: BackgroundSite) -> tuple[Any, list[str], list[str]]:
    """A fresh tab on the site, loaded and ready; the URLs it asked for and any script errors."""
    page = browser.new_page(viewport={"width": 900, "height": 900})
    asked: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(site.url)
    page.wait_for_selector("body[data-ready=true]", state="attached", timeout=120_000)
    return page, asked, errors


def test_the_digits_site_answers_drawings_in_the_browser_and_asks_nothing_after_loading(browser, sites) -> None:
    with BackgroundSite(sites["digits"]) as site:
        page, asked, errors = open_site(browser, site)
        loaded = len(asked)
        assert all(url.startswith(site.url) for url in asked), asked  # nothing from a CDN
        assert any(url.endswith(".wasm") for url in asked) and any(url.endswith("model.onnx") for url in asked)
        summary = page.locator("#summary").text_content()
        assert "in your browser" in summary and "threads" in summary  # COOP/COEP: WebAssembly threads

        prediction = page.locator("[data-role=prediction]")
        draw_zero(page)
        page.get_by_text("Answered by digits v1 in").wait_for()
        assert prediction.text_content() == "0"
        page.get_by_role("button", name="Clear").click()
        draw_one(page)
        page.get_by_text("Answered by digits v1 in").wait_for()
        assert prediction.text_content() == "1"
        assert page.locator("meter").count() == 10
        assert page.get_by_label("Upload a photo of a digit").count() == 0  # photos need the Python hook
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "site-digits.png"))
        assert asked[loaded:] == [] and errors == []
        page.close()


@pytest.mark.parametrize("folder", [DIGITS, HELPDESK], ids=["digits", "helpdesk"])
def test_the_browser_answers_the_held_out_set_as_the_function_does(browser, sites, folder: Path) -> None:
    bodies = heldout(folder)
    client = make_client(folder)
    expected = [client.post("/predict", json=body).get_json() for body in bodies]
    model = _loaded(folder)
    probabilities = np.concatenate([model.infer(model.preprocess(body))["probabilities"] for body in bodies])
    with BackgroundSite(sites[folder.name]) as site:
        page, asked, errors = open_site(browser, site)
        loaded = len(asked)
        results = page.evaluate(ALL, [folder.name, bodies])
        assert asked[loaded:] == [] and errors == []
        page.close()
    answers = [answer for answer, _ in results]
    assert len(answers) == len(expected) == len(bodies)
    # The model's own probabilities, before any rounding by the post hooks, within 1e-5.
    in_browser = np.array([row for _, outputs in results for row in outputs["probabilities"]])
    assert in_browser.shape == probabilities.shape and np.abs(in_browser - probabilities).max() <= 1e-5
    if folder == DIGITS:
        assert [a["digit"] for a in answers] == [e["digit"] for e in expected]  # every label identical
        got = np.array([a["probabilities"] for a in answers])
        assert np.abs(got - np.array([e["probabilities"] for e in expected])).max() <= 1e-5
    else:
        for got, want in zip(answers, expected, strict=True):
            assert (got["intent"], got["answer"]) == (want["intent"], want["answer"])
            assert [alt["intent"] for alt in got["alternatives"]] == [alt["intent"] for alt in want["alternatives"]]
            # Rounded to 4 places by both hooks: at most one unit of the last place apart.
            assert abs(got["confidence"] - want["confidence"]) <= 1e-4 + 1e-9


def _loaded(folder: Path) -> Any:
    from modelfn.contract import compile_contract
    from modelfn.runtime.model import load_model, local_artifact
    from modelfn.settings import Settings

    contract = compile_contract(folder)
    return load_model(folder, contract, Settings(), *local_artifact(contract, folder))


def test_the_helpdesk_chats_in_the_browser_on_one_thread_without_cross_origin_isolation(browser, sites) -> None:
    with BackgroundSite(sites["helpdesk"], isolated=False) as site:
        page, asked, errors = open_site(browser, site)
        loaded = len(asked)
        assert "one thread" in page.locator("#summary").text_content()
        message = page.get_by_label("Your message")
        message.fill("How do I deploy my model to AWS Lambda?")
        page.get_by_role("button", name="Send").click()
        reply = page.get_by_role("log").locator("li.bot").first
        reply.wait_for()
        assert reply.text_content().startswith("For AWS, modelfn render writes serverless.yml")
        message.fill("what is the weather like on mars")
        message.press("Enter")
        page.get_by_role("log").locator("li.bot").nth(1).wait_for()
        assert page.get_by_role("log").locator("li.bot").nth(1).text_content().startswith("Sorry, I'm not sure")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "site-helpdesk.png"))
        assert asked[loaded:] == [] and errors == []
        page.close()


def test_a_model_without_hooks_runs_on_its_raw_tensors_in_the_form(browser, tmp_path) -> None:
    folder = copy_function(tmp_path, hooks=None, uploads=None, page=None, validation_requests=None)
    pixels = [
        [float(v) for row in yaml.safe_load((DIGITS / "modelfn.yaml").read_text())["example"]["image"] for v in row]
    ]
    edit = yaml.safe_load((folder / "modelfn.yaml").read_text())
    edit["example"] = {"pixels": pixels}
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(edit, sort_keys=False))
    expected = make_client(folder).post("/predict", json={"pixels": pixels}).get_json()
    root = Path(build_web(folder, tmp_path / "out").output)
    with BackgroundSite(root) as site:
        page, _, errors = open_site(browser, site)
        page.get_by_role("button", name="Send").click()
        page.get_by_text("Answered by digits v1 in").wait_for()
        answer = json.loads(page.locator(".result pre").text_content())
        assert errors == []
        page.close()
    assert answer["label"] == expected["label"] == [2]
    assert np.abs(np.array(answer["probabilities"]) - np.array(expected["probabilities"])).max() <= 1e-5


def test_models_that_cannot_run_in_a_browser_are_refused_with_the_reason(tmp_path) -> None:
    with pytest.raises(ContractError, match="runs ONNX models only and this one is tensorflow; convert it first"):
        build_web(ROOT / "functions" / "digits-keras", tmp_path)
    no_twin = copy_function(tmp_path, hooks={"pre": "hooks.py:preprocess", "post": "hooks.py:postprocess"})
    with pytest.raises(ContractError, match="Python hooks cannot run in a browser and it has no JavaScript twin"):
        build_web(no_twin, tmp_path)
    tampered = copy_function(tmp_path)
    (tampered / "model.onnx").write_bytes((tampered / "model.onnx").read_bytes()[:-1] + b"\0")
    with pytest.raises(ContractError, match="do not match the sha256"):
        build_web(tampered, tmp_path)


def test_the_site_server_sends_only_listed_files_with_their_types_caching_and_encoding(sites) -> None:
    root = sites["digits"]
    manifest = json.loads((root / "site.json").read_text())
    wasm = next(f for f in manifest["files"] if f["path"].endswith(".wasm"))
    assert wasm["media_type"] == "application/wasm" and wasm["cache_control"].endswith("immutable")
    assert wasm["gzip_bytes"] < wasm["bytes"] / 3  # 14 MB of WebAssembly travel as ~3.5 MB
    with BackgroundSite(root) as site:
        got = requests.get(site.url + wasm["path"], headers={"Accept-Encoding": "gzip"}, timeout=30)
        assert got.status_code == 200 and got.headers["Content-Type"] == "application/wasm"
        assert got.headers["Content-Encoding"] == "gzip" and len(got.content) == wasm["bytes"]  # decoded by requests
        assert got.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        index = requests.get(site.url, timeout=30)
        assert index.headers["Cache-Control"] == "no-cache" and 'data-site="browser"' in index.text
        assert "connect-src 'self'" in index.text  # the page's own policy: nothing can be sent elsewhere
        for path in ("site.json", "../site.json", "%2e%2e/site.json", "gzip/page.js", "models/digits/1/"):
            assert requests.get(site.url + path, timeout=30).status_code == 404
        etag = index.headers["ETag"]
        assert requests.get(site.url, headers={"If-None-Match": etag}, timeout=30).status_code == 304
    with BackgroundSite(root, isolated=False) as site:
        assert "Cross-Origin-Embedder-Policy" not in requests.get(site.url, timeout=30).headers
    headers = (root / "site" / "_headers").read_text()
    assert "Cross-Origin-Opener-Policy: same-origin" in headers and "/ort-1.30.0/*" in headers


#: Each body's answer in the page, or the error it raised (its class and message).
ANSWERS = """async ([name, bodies]) => {
  const out = [];
  for (const body of bodies) {
    try { out.push({ answer: await window.modelfn.predict(name, body) }); }
    catch (error) { out.push({ error: error.message, kind: error.name }); }
  }
  return out;
}"""


def test_a_converted_table_takes_rows_in_the_browser_as_the_function_does(browser, tmp_path) -> None:
    import csv
    import subprocess
    import sys

    churn = ROOT / "functions" / "churn"
    command = [sys.executable, "-m", "modelfn", "convert", str(churn), "--out", str(tmp_path / "onnx")]
    converted = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert converted.returncode == 0, converted.stderr
    root = Path(build_web(tmp_path / "onnx", tmp_path / "out").output)
    with (churn / "validation.csv").open() as file:
        cells = list(csv.DictReader(file))[:200]
    rows = [{"tenure": int(r["tenure"]), "plan": r["plan"], "contract": r["contract"],
             "monthly": float(r["monthly"]) if r["monthly"] else None} for r in cells]  # fmt: skip
    assert any(row["monthly"] is None for row in rows)
    client = make_client(churn)  # the pipeline as trained
    expected = client.post("/predict", json={"rows": rows}).get_json()
    bad = [{**rows[0], "plan": "gold"}, {**rows[0], "tenure": "twelve"}, {"plan": "pro"}, {**rows[0], "monthly": None}]
    refusals = [client.post("/predict", json=body) for body in bad]
    with BackgroundSite(root) as site:
        page, asked, errors = open_site(browser, site)
        loaded = len(asked)
        results = page.evaluate(ANSWERS, ["churn", [{"rows": rows}, rows[0], *bad]])
        assert asked[loaded:] == [] and errors == []
        page.close()
    assert "answer" in results[0], results[0]
    assert results[0]["answer"]["label"] == expected["label"]
    got = np.array(results[0]["answer"]["probabilities"])
    assert np.abs(got - np.array(expected["probabilities"])).max() <= 1e-5
    assert results[1]["answer"]["label"] == expected["label"][:1]
    # The same words as the function's 400s: an unknown category, a wrong type, a missing column.
    assert results[2] == {"error": refusals[0].get_json()["error"], "kind": "InvalidInput"}
    assert results[3]["kind"] == "InvalidInput" and "column 'tenure'" in results[3]["error"]
    assert refusals[1].status_code == 400 and "column 'tenure'" in refusals[1].get_json()["error"]
    assert results[4] == {"error": refusals[2].get_json()["error"], "kind": "InvalidInput"}
    assert "answer" in results[5] and refusals[3].status_code == 200  # monthly may be null
