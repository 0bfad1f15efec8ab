"""Alexa answers: SSML escaped and within Alexa's limits, and the skill invoking Lambda directly."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET

import orjson
import pytest
from alexa_pki import SKILL_ID, envelope
from ask_sdk_core.serialize import DefaultSerializer
from helpers import ROOT

from modelfn.adapters.aws_lambda import lambda_function
from modelfn.contract import load_contract
from modelfn.protocols.alexa import MAX_RESPONSE_BYTES, MAX_SPEECH_CHARS, _speak, slot_values, ssml
from modelfn.security.alexa_verifier import VerificationFailed
from modelfn.settings import Settings

HELPDESK = ROOT / "functions" / "helpdesk"


def test_ssml_escapes_every_xml_special_character() -> None:
    text = """Tom & Jerry say "<speak>" isn't </speak><audio src='x'/>"""
    spoken = ssml(text)
    root = ET.fromstring(spoken)  # well-formed: one <speak> element, no injected markup
    assert root.tag == "speak" and list(root) == [] and root.text == text


def test_long_answers_are_cut_to_alexas_limits() -> None:
    contract = load_contract(HELPDESK)
    text = "<&> " * 6000  # 24,000 characters, 84,000 once escaped
    answer = _speak(contract, text, end=True)
    speech = answer["response"]["outputSpeech"]["ssml"]
    assert len(speech) <= MAX_SPEECH_CHARS and speech.endswith("…</speak>")
    ET.fromstring(speech)  # cut between entities, never inside one
    assert len(orjson.dumps(answer)) <= MAX_RESPONSE_BYTES
    DefaultSerializer().deserialize(orjson.dumps(answer).decode(), "ask_sdk_model.response_envelope.ResponseEnvelope")


def test_slot_values_skip_empty_slots_and_prefer_resolved_names() -> None:
    slots = {
        "question": {"name": "question", "value": "deploy"},
        "empty": {"name": "empty", "confirmationStatus": "NONE"},
        "city": {"name": "city", "value": "paris", "resolutions": {"resolutionsPerAuthority": [
            {"status": {"code": "ER_SUCCESS_NO_MATCH"}},
            {"status": {"code": "ER_SUCCESS_MATCH"}, "values": [{"value": {"name": "Paris", "id": "PAR"}}]},
        ]}},
        "broken": "not a slot",
    }  # fmt: skip
    assert slot_values(slots) == {"question": "deploy", "city": "Paris"}
    assert slot_values(None) == {}


@pytest.fixture
def lambda_handler():
    handler = lambda_function(str(HELPDESK / "main.py"), settings=Settings(alexa_skill_ids=SKILL_ID))
    yield handler
    sys.modules.pop("modelfn_hooks_helpdesk_1", None)


def test_on_lambda_the_skill_invokes_the_function_directly(lambda_handler) -> None:
    answer = lambda_handler(envelope(slots={"question": "how do I install modelfn"}), None)
    parsed = DefaultSerializer().deserialize(orjson.dumps(answer).decode(), "ask_sdk_model.ResponseEnvelope")
    assert parsed.response.card.content.startswith("You need Python 3.11 or newer")


def test_on_lambda_the_skill_id_and_timestamp_are_still_checked(lambda_handler) -> None:
    with pytest.raises(VerificationFailed, match="does not serve"):
        lambda_handler(envelope(skill_id="amzn1.ask.skill.other"), None)
    stale = envelope()
    stale["request"]["timestamp"] = "2020-01-01T00:00:00Z"
    with pytest.raises(VerificationFailed, match="150 s"):
        lambda_handler(stale, None)
