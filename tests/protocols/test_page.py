"""The web page: served openly with a strict policy, model cards behind the keys, and driven in Chromium.

The browser test runs Debian's Chromium headless through Playwright (``make test`` installs it):
it draws digits on the canvas with the mouse, reads the predictions, chats with the helpdesk
behind an API key, and saves screenshots under ``build/test-artifacts/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests
from conftest import make_client
from credentials import add_key
from helpers import ARTIFACTS, DIGITS, HELPDESK, copy_function, draw_one, draw_zero, running


def test_the_page_is_static_and_served_with_a_strict_policy(digits_client) -> None:
    page = digits_client.get("/")
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    html = page.get_data(as_text=True)
    assert '<script src="page.js"' in html and "http" not in html.split("<footer>")[0]  # no external asset
    assert digits_client.get("/page.js").headers["Content-Type"].startswith("text/javascript")
    assert digits_client.get("/page.css").headers["Content-Type"].startswith("text/css")
    assert digits_client.get("/page.html").status_code == 404  # only the three files exist


def test_model_cards_describe_each_model_and_its_widget(digits_client) -> None:
    [card] = digits_client.get("/models").get_json()["models"]
    assert card["name"] == "digits" and card["version"] == "1"
    assert card["page"] == {"widget": "sketch", "input": "image", "size": 8, "scale": 16.0, "label": "digit",
                            "scores": "probabilities", "reply": "answer"}  # fmt: skip
    assert card["metrics"]["heldout_accuracy"] == 0.975 and card["example"]["image"]
    assert card["uploads"] == {"media_types": ["image/png", "image/jpeg"], "max_bytes": 2097152, "field": "image"}


def test_the_page_can_be_turned_off(monkeypatch) -> None:
    monkeypatch.setenv("MODELFN_PAGE", "0")
    client = make_client(DIGITS)
    assert client.get("/").status_code == 404 and client.get("/page.js").status_code == 404


@pytest.mark.slow
def test_drawing_a_digit_shows_the_models_prediction(browser, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with running(DIGITS, tmp_path / "serve.log") as server:
        page = browser.new_page(viewport={"width": 900, "height": 820})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.goto(server.url + "/")
        prediction = page.locator("[data-role=prediction]")

        draw_zero(page)
        page.get_by_text("Answered by digits v1 on the function").wait_for()
        assert prediction.text_content() == "0"
        assert page.get_by_role("list", name="Probability of each class").locator("meter").count() == 10

        page.get_by_role("button", name="Clear").click()
        assert prediction.text_content() == "–"
        draw_one(page)
        page.get_by_text("Answered by digits v1 on the function").wait_for()
        assert prediction.text_content() == "1"
        page.screenshot(path=str(ARTIFACTS / "page-digits.png"))

        # A photo beside the pad: a zero written in dark ink on white paper, uploaded as a PNG file.
        photo = tmp_path / "zero.png"
        _ring_photo(photo)
        page.get_by_label("Upload a photo of a digit").set_input_files(str(photo))
        from playwright.sync_api import expect

        expect(prediction).to_have_text("0", timeout=60_000)  # it said 1 before the photo
        assert errors == []
        page.close()


def _ring_photo(path: Path) -> None:
    """A hand-drawn-looking 0: a thick dark ellipse on a white 200x240 page."""
    from PIL import Image, ImageDraw

    photo = Image.new("L", (200, 240), 255)
    ImageDraw.Draw(photo).ellipse((50, 30, 150, 210), outline=20, width=18)
    photo.save(path, "PNG")


@pytest.mark.slow
def test_chatting_with_the_helpdesk_behind_an_api_key(browser, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    key = add_key(keys, "page", "helpdesk")
    env = {"MODELFN_API_KEYS_FILE": str(keys)}
    with running(HELPDESK, tmp_path / "serve.log", env) as server:
        assert requests.get(server.url + "/", timeout=5).status_code == 200  # the page itself is open
        assert requests.get(server.url + "/models", timeout=5).status_code == 401  # the cards are not
        page = browser.new_page(viewport={"width": 900, "height": 760})
        page.goto(server.url + "/")
        page.get_by_label("This function needs an API key").fill(key)
        page.get_by_role("button", name="Use key").click()

        message = page.get_by_label("Your message")
        message.fill("How do I deploy my model to AWS Lambda?")
        page.get_by_role("button", name="Send").click()
        log = page.get_by_role("log")
        reply = log.locator("li.bot").first
        reply.wait_for()
        assert reply.text_content().startswith("For AWS, modelfn render writes serverless.yml")

        message.fill("and how do I roll back a bad version?")
        message.press("Enter")
        log.locator("li.bot").nth(1).wait_for()
        assert log.locator("li.bot").nth(1).text_content().startswith("An alias such as prod points at a version")
        assert [item.text_content() for item in log.locator("li.user").all()] == [
            "How do I deploy my model to AWS Lambda?",
            "and how do I roll back a bad version?",
        ]
        page.screenshot(path=str(ARTIFACTS / "page-helpdesk.png"))
        page.close()


def test_a_generative_model_streams_its_answer_into_the_chat(browser, tmp_path: Path) -> None:
    """The chat of functions/chat reads /openai/v1/chat/completions as it streams: the reply grows in place."""
    from generative import CHAT

    with running(CHAT, tmp_path / "serve.log") as server:
        page = browser.new_page(viewport={"width": 900, "height": 760})
        streamed: list[str] = []
        page.on("request", lambda sent: streamed.append(sent.post_data or "") if "/openai/" in sent.url else None)
        page.goto(server.url + "/")
        message = page.get_by_label("Your message")
        message.fill("how do I deploy my model to aws lambda")
        page.get_by_role("button", name="Send").click()
        reply = page.get_by_role("log").locator("li.bot").first
        reply.wait_for()
        page.locator("li.bot[aria-busy=false]").wait_for()  # the stream has ended
        assert reply.text_content().startswith("For AWS, modelfn render writes serverless.yml")
        assert len(streamed) == 1 and '"stream": true' in streamed[0].replace('":true', '": true')
        page.close()


@pytest.fixture(scope="module")
def digits_bundle(tmp_path_factory) -> Path:
    from modelfn.tooling.web_bundle import build_web

    return Path(build_web(DIGITS, tmp_path_factory.mktemp("web")).output)


def test_with_a_browser_bundle_the_cards_offer_the_browser_and_the_bundle_is_served(monkeypatch, digits_bundle) -> None:
    monkeypatch.setenv("MODELFN_BROWSER_BUNDLE", str(digits_bundle))
    client = make_client(DIGITS)
    [card] = client.get("/models").get_json()["models"]
    assert card["browser"]["model"] == "models/digits/1/model.onnx"  # under /browser/
    assert card["browser"]["hooks"] == "models/digits/1/hooks.js" and card["browser"]["pre"] == "preprocess"
    assert "'wasm-unsafe-eval'" in client.get("/").headers["Content-Security-Policy"]
    wasm = client.get("/browser/ort-1.30.0/ort-wasm-simd-threaded.wasm", headers={"Accept-Encoding": "gzip"})
    assert wasm.status_code == 200 and wasm.headers["Content-Type"] == "application/wasm"
    assert wasm.headers["Content-Encoding"] == "gzip" and wasm.headers["Cache-Control"].endswith("immutable")
    wasm_path = "/browser/ort-1.30.0/ort-wasm-simd-threaded.wasm"
    again = client.get(wasm_path, headers={"If-None-Match": wasm.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    assert client.get("/browser/browser.js").headers["Content-Type"].startswith("text/javascript")
    for path in ("/browser/site.json", "/browser/../site.json", "/browser/gzip/page.js", "/browser/models.json/x"):
        answer = client.get(path)
        assert answer.status_code == 404 and "error" in answer.get_json()


def test_a_bundle_of_another_version_or_a_broken_one_is_not_offered(monkeypatch, digits_bundle, tmp_path) -> None:
    monkeypatch.setenv("MODELFN_BROWSER_BUNDLE", str(digits_bundle))
    newer = copy_function(tmp_path, version="2")
    [card] = make_client(newer).get("/models").get_json()["models"]
    assert "browser" not in card  # the bundle runs v1, the function serves v2

    broken = tmp_path / "broken"
    shutil.copytree(digits_bundle, broken)
    (broken / "site" / "models.json").write_text("{")
    monkeypatch.setenv("MODELFN_BROWSER_BUNDLE", str(broken))
    client = make_client(DIGITS)
    [card] = client.get("/models").get_json()["models"]
    assert "browser" not in card and client.get("/browser/browser.js").status_code == 404
    assert "'wasm-unsafe-eval'" not in client.get("/").headers["Content-Security-Policy"]


@pytest.mark.slow
def test_the_switch_answers_in_the_browser_on_the_function_or_both_side_by_side(
    browser, digits_bundle, tmp_path
) -> None:
    env = {"MODELFN_BROWSER_BUNDLE": str(digits_bundle)}
    with running(DIGITS, tmp_path / "serve.log", env) as server:
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        errors: list[str] = []
        predictions: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: predictions.append(request.url) if request.method == "POST" else None)
        page.goto(server.url + "/")

        page.get_by_role("radio", name="both, side by side").check()
        draw_one(page)
        page.get_by_text("Answered by digits v1 on this browser").wait_for(timeout=60_000)
        page.get_by_text("Answered by digits v1 on the function").wait_for()
        function_side = page.locator(".result[data-source=function] [data-role=prediction]").text_content()
        browser_side = page.locator(".result[data-source=browser] [data-role=prediction]").text_content()
        assert function_side == browser_side == "1"
        page.screenshot(path=str(ARTIFACTS / "page-digits-both.png"), full_page=True)
        assert len(predictions) == 1  # the function was asked once; the browser asked no one

        page.get_by_role("radio", name="this browser").check()
        page.get_by_role("button", name="Clear").click()
        draw_zero(page)
        from playwright.sync_api import expect

        expect(page.locator(".result[data-source=browser] [data-role=prediction]")).to_have_text("0")
        assert page.locator(".result[data-source=function]").is_hidden()
        assert len(predictions) == 1 and errors == []
        page.close()
