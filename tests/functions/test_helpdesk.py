"""The helpdesk chatbot as a real server: plain JSON, an Alexa skill and Dialogflow ES/CX webhooks.

Alexa is played by a CA and signing certificate made here (``alexa_pki.py``); the function
fetches the chain over HTTP from a local mirror (``MODELFN_ALEXA_CERT_MIRROR``) and checks it
against a trust store holding only that CA. Responses are read back with Amazon's own
``ask-sdk-model`` types.
"""

from __future__ import annotations

import base64
import datetime as dt
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
import yaml
from alexa_pki import PKI, SKILL_ID, ChainMirror, body_of, chain_mirror, envelope
from ask_sdk_core.serialize import DefaultSerializer
from helpers import ROOT, Server, near_documented, running

HELPDESK = ROOT / "functions" / "helpdesk"
SECRET = "s3cret-webhook-value"
USER, PASSWORD = "dialogflow", "correct horse battery staple"
DEPLOY_GCP = "modelfn render writes Terraform for Cloud Functions gen 2 or Cloud Run"


def load_helpdesk_module(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"helpdesk_{name}", HELPDESK / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pki() -> PKI:
    return PKI()


@pytest.fixture(scope="module")
def mirror(pki: PKI) -> Iterator[ChainMirror]:
    with chain_mirror() as served:
        served.publish("echo-api-cert.pem", pki.signer)
        for name in ("expired", "wrong_name", "untrusted"):
            served.publish(f"{name}.pem", getattr(pki, name))
        yield served


def helpdesk_env(pki: PKI, mirror: ChainMirror, folder: Path) -> dict[str, str]:
    return {
        "MODELFN_ALEXA_SKILL_IDS": SKILL_ID,
        "MODELFN_ALEXA_TRUST_STORE": str(pki.write_trust_store(folder / "roots.pem")),
        "MODELFN_ALEXA_CERT_MIRROR": mirror.url,
        "MODELFN_DIALOGFLOW_SECRET": SECRET,
        "MODELFN_DIALOGFLOW_BASIC_AUTH": f"{USER}:{PASSWORD}",
    }


@pytest.fixture(scope="module")
def server(pki: PKI, mirror: ChainMirror, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("helpdesk")
    with running(HELPDESK, folder / "serve.log", helpdesk_env(pki, mirror, folder)) as started:
        yield started


def ask_alexa(server: Server, pki: PKI, value: dict[str, Any], url: str | None = None) -> requests.Response:
    body = body_of(value)
    headers = pki.signer.headers(body, url or "https://s3.amazonaws.com/echo.api/echo-api-cert.pem")
    return requests.post(server.url + "/alexa", data=body, headers=headers, timeout=10)


def read_envelope(response: requests.Response) -> Any:
    """The body as ask-sdk-model's ResponseEnvelope (fails on a shape Amazon's SDK would not read)."""
    assert response.status_code == 200, response.text
    return DefaultSerializer().deserialize(response.text, "ask_sdk_model.response_envelope.ResponseEnvelope")


# -- plain JSON ----------------------------------------------------------------------------------------
def test_the_contract_reports_the_served_models_held_out_accuracy(server: Server) -> None:
    train = load_helpdesk_module("train")
    _, texts, _, labels, names = train.split()
    alternatives = []
    for start in range(0, len(texts), 32):  # the hook takes 32 questions a request
        response = requests.post(server.url + "/predict", json={"texts": texts[start : start + 32]}, timeout=10)
        assert response.status_code == 200, response.text
        alternatives += [answer["alternatives"][0]["intent"] for answer in response.json()["answers"]]
    accuracy = sum(names[label] == got for label, got in zip(labels, alternatives, strict=True)) / len(labels)
    metrics = yaml.safe_load((HELPDESK / "modelfn.yaml").read_text())["docs"]["metrics"]
    assert len(texts) == metrics["heldout_phrasings"] == 131
    assert near_documented(accuracy, metrics["heldout_accuracy"], len(labels))
    assert accuracy > 0.8


def test_questions_get_their_intent_and_off_topic_ones_the_fallback(server: Server) -> None:
    answer = requests.post(server.url + "/predict", json={"text": "How do I deploy to Cloud Run?"}, timeout=10).json()
    assert answer["intent"] == "deploy_gcp" and answer["answer"].startswith(DEPLOY_GCP)
    off_topic = requests.post(server.url + "/predict", json={"text": "order a pizza"}, timeout=10).json()
    assert off_topic["intent"] is None and off_topic["answer"].startswith("Sorry")
    for bad in ({"text": ""}, {"text": "x" * 501}, {"texts": []}, {"question": "hi"}):
        refused = requests.post(server.url + "/predict", json=bad, timeout=10)
        assert refused.status_code == 400 and "error" in refused.json(), bad


# -- Alexa ---------------------------------------------------------------------------------------------
def test_alexa_launch_question_help_and_stop(server: Server, pki: PKI) -> None:
    launch = read_envelope(ask_alexa(server, pki, envelope("LaunchRequest")))
    assert launch.response.output_speech.ssml.startswith("<speak>Hi! I&apos;m the modelfn help desk")
    assert launch.response.should_end_session is False
    assert launch.response.reprompt.output_speech.ssml == "<speak>Anything else about modelfn?</speak>"

    question = envelope(slots={"question": "how do I deploy to cloud run"})
    answered = ask_alexa(server, pki, question)
    assert answered.headers["X-Model-Version"] == "1"
    spoken = read_envelope(answered).response
    assert spoken.output_speech.ssml == f"<speak>{spoken.card.content}</speak>"
    assert spoken.card.content.startswith(DEPLOY_GCP) and spoken.card.title == "helpdesk"
    assert spoken.should_end_session is False  # the contract has a reprompt: the session stays open

    helped = read_envelope(ask_alexa(server, pki, envelope(intent="AMAZON.HelpIntent"))).response
    assert "Ask me anything about modelfn" in helped.output_speech.ssml
    stopped = read_envelope(ask_alexa(server, pki, envelope(intent="AMAZON.StopIntent"))).response
    assert stopped.should_end_session is True and "Goodbye" in stopped.output_speech.ssml
    fallback = read_envelope(ask_alexa(server, pki, envelope(intent="AMAZON.FallbackIntent"))).response
    assert "didn&apos;t catch" in fallback.output_speech.ssml


def test_alexa_slots_resolve_to_canonical_values_and_an_empty_slot_gets_the_fallback(server: Server, pki: PKI) -> None:
    question = envelope(slots={"question": "ship it to amazon please"})
    question["request"]["intent"]["slots"]["question"]["resolutions"] = {
        "resolutionsPerAuthority": [
            {"authority": "amzn1.er-authority.echo-sdk.x.Topic", "status": {"code": "ER_SUCCESS_MATCH"},
             "values": [{"value": {"name": "how do I deploy to aws lambda", "id": "AWS"}}]}
        ]
    }  # fmt: skip
    spoken = read_envelope(ask_alexa(server, pki, question)).response
    assert spoken.card.content.startswith("For AWS, modelfn render writes serverless.yml")
    empty = envelope()
    empty["request"]["intent"]["slots"] = {"question": {"name": "question", "confirmationStatus": "NONE"}}
    assert "didn&apos;t catch" in read_envelope(ask_alexa(server, pki, empty)).response.output_speech.ssml


def test_alexa_session_ended_gets_an_empty_response(server: Server, pki: PKI) -> None:
    ended = read_envelope(ask_alexa(server, pki, envelope("SessionEndedRequest")))
    assert ended.response.output_speech is None and ended.version == "1.0"


def test_every_failed_alexa_check_is_a_400_and_runs_nothing(pki: PKI, mirror: ChainMirror, tmp_path: Path) -> None:
    """A fresh server gets only forged or broken requests: each is refused, and the model never loads."""
    good_url = "https://s3.amazonaws.com/echo.api/echo-api-cert.pem"
    stale = envelope(timestamp=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=200))
    body = body_of(envelope(slots={"question": "what is modelfn"}))
    cases = {
        "bad URL": (body, pki.signer.headers(body, "http://s3.amazonaws.com/echo.api/echo-api-cert.pem")),
        "expired certificate": (body, pki.expired.headers(body, "https://s3.amazonaws.com/echo.api/expired.pem")),
        "wrong SAN": (body, pki.wrong_name.headers(body, "https://s3.amazonaws.com/echo.api/wrong_name.pem")),
        "untrusted chain": (body, pki.untrusted.headers(body, "https://s3.amazonaws.com/echo.api/untrusted.pem")),
        "tampered body": (body.replace(b"modelfn", b"MODELFN"), pki.signer.headers(body, good_url)),
        "stale timestamp": (body_of(stale), pki.signer.headers(body_of(stale), good_url)),
        "wrong skill id": (
            body_of(envelope(skill_id="amzn1.ask.skill.other")),
            pki.signer.headers(body_of(envelope(skill_id="amzn1.ask.skill.other")), good_url),
        ),
        "no signature": (body, {"SignatureCertChainUrl": good_url}),
    }
    with running(HELPDESK, tmp_path / "serve.log", helpdesk_env(pki, mirror, tmp_path)) as fresh:
        for case, (data, headers) in cases.items():
            response = requests.post(fresh.url + "/alexa", data=data, headers=headers, timeout=10)
            assert response.status_code == 400, (case, response.text)
            assert response.headers["Content-Type"] == "application/json" and response.json()["error"], case
        log = fresh.log()
    assert "loading model helpdesk" not in log and "Traceback" not in log


# -- Dialogflow ----------------------------------------------------------------------------------------
ES_REQUEST = {
    "responseId": "r1",
    "session": "projects/p/agent/sessions/s1",
    "queryResult": {
        "queryText": "how can I roll back a bad release",
        "parameters": {"topic": "rollback"},
        "allRequiredParamsPresent": True,
        "intent": {"name": "projects/p/agent/intents/1", "displayName": "Ask"},
        "intentDetectionConfidence": 1,
        "languageCode": "en",
    },
    "originalDetectIntentRequest": {"source": "DIALOGFLOW_CONSOLE", "payload": {}},
}
CX_REQUEST = {
    "detectIntentResponseId": "r2",
    "languageCode": "en",
    "text": "which frameworks can I serve",
    "fulfillmentInfo": {"tag": "ask"},
    "intentInfo": {"lastMatchedIntent": "projects/p/locations/l/agents/a/intents/1", "displayName": "Ask",
                   "confidence": 0.9, "parameters": {"topic": {"originalValue": "models", "resolvedValue": "models"}}},
    "pageInfo": {"currentPage": "projects/p/locations/l/agents/a/flows/f/pages/START_PAGE", "displayName": "Start"},
    "sessionInfo": {"session": "projects/p/locations/l/agents/a/sessions/s2", "parameters": {}},
    "messages": [{"text": {"text": ["agent-defined response"]}}],
    "payload": {},
}  # fmt: skip


def test_dialogflow_es_is_answered_with_fulfillment_text(server: Server) -> None:
    response = requests.post(server.url + "/dialogflow", json=ES_REQUEST, headers={"X-Webhook-Secret": SECRET},
                             timeout=10)  # fmt: skip
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["fulfillmentText"].startswith("An alias such as prod points at a version")
    assert answer["fulfillmentMessages"] == [{"text": {"text": [answer["fulfillmentText"]]}}]
    assert answer["payload"]["modelfn"]["answer"]["intent"] == "aliases"


def test_dialogflow_cx_is_answered_with_a_fulfillment_response(server: Server) -> None:
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    response = requests.post(server.url + "/dialogflow", json=CX_REQUEST, headers={"Authorization": f"Basic {basic}"},
                             timeout=10)  # fmt: skip
    assert response.status_code == 200, response.text
    answer = response.json()
    [message] = answer["fulfillmentResponse"]["messages"]
    assert message["text"]["text"][0].startswith("modelfn serves ONNX, TensorFlow and Keras")
    assert answer["fulfillmentResponse"]["mergeBehavior"] == "REPLACE"
    assert "fulfillmentText" not in answer


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Webhook-Secret": SECRET + "x"},
        {"X-Webhook-Secret": ""},
        {"Authorization": "Basic " + base64.b64encode(f"{USER}:wrong".encode()).decode()},
        {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}x".encode()).decode()},
        {"Authorization": "Basic !!!"},
        {"Authorization": f"Bearer {SECRET}"},
    ],
)
def test_dialogflow_with_wrong_credentials_gets_401(server: Server, headers: dict[str, str]) -> None:
    response = requests.post(server.url + "/dialogflow", json=ES_REQUEST, headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.json() == {"error": "missing or invalid webhook credentials"}
    assert response.headers["WWW-Authenticate"] == 'Basic realm="dialogflow"'


def test_dialogflow_refuses_other_shapes_with_400(server: Server) -> None:
    headers = {"X-Webhook-Secret": SECRET}
    for body in ({"hello": "world"}, [1, 2]):
        response = requests.post(server.url + "/dialogflow", data=orjson.dumps(body), headers=headers, timeout=10)
        assert response.status_code == 400 and "error" in response.json()
