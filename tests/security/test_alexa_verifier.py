"""Each rule Amazon sets for Alexa HTTPS endpoints accepts its valid case and refuses its violation.

The tests play Amazon with a CA, intermediate and signing certificate made here
(``alexa_pki.py``); the chains are fetched over real HTTP from a local mirror.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator

import pytest
from alexa_pki import PKI, SKILL_ID, ChainMirror, body_of, chain_mirror, envelope
from cryptography.x509.verification import Store

from modelfn.security.alexa_verifier import AlexaVerifier, VerificationFailed, check_cert_url, check_envelope


@pytest.fixture(scope="module")
def pki() -> PKI:
    return PKI()


@pytest.fixture(scope="module")
def mirror() -> Iterator[ChainMirror]:
    with chain_mirror() as served:
        yield served


@pytest.fixture
def verifier(pki: PKI, mirror: ChainMirror) -> AlexaVerifier:
    return AlexaVerifier([SKILL_ID], Store([pki.root.cert]), mirror=mirror.url)


# -- 1. the certificate URL (Amazon's own examples first) ---------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "https://s3.amazonaws.com/echo.api/echo-api-cert.pem",
        "https://s3.amazonaws.com:443/echo.api/echo-api-cert.pem",
        "https://s3.amazonaws.com/echo.api/../echo.api/echo-api-cert.pem",
        "HTTPS://S3.AMAZONAWS.COM/echo.api/echo-api-cert.pem",
    ],
)
def test_valid_cert_urls(url: str) -> None:
    assert check_cert_url(url) == "/echo.api/echo-api-cert.pem"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://s3.amazonaws.com/echo.api/echo-api-cert.pem", "https"),
        ("https://notamazon.com/echo.api/echo-api-cert.pem", "s3.amazonaws.com"),
        ("https://s3.amazonaws.com.evil.example/echo.api/cert.pem", "s3.amazonaws.com"),
        ("https://user@s3.amazonaws.com/echo.api/cert.pem", "s3.amazonaws.com"),
        ("https://s3.amazonaws.com/EcHo.aPi/echo-api-cert.pem", "/echo.api/"),
        ("https://s3.amazonaws.com/invalid.path/echo-api-cert.pem", "/echo.api/"),
        ("https://s3.amazonaws.com/echo.api/../invalid.path/cert.pem", "/echo.api/"),
        ("https://s3.amazonaws.com//echo.api/cert.pem", "/echo.api/"),
        ("https://s3.amazonaws.com/echo.api/cert.pem?x=1", "/echo.api/"),
        ("https://s3.amazonaws.com:563/echo.api/echo-api-cert.pem", "443"),
        ("https://s3.amazonaws.com:99999/echo.api/cert.pem", "not a URL"),
        ("https://s3.amazonaws.com/echo.api/a b.pem", "characters"),  # was a 500 at the fetch
        ("https://s3.amazonaws.com/echo.api/%2e%2e/x.pem", "characters"),
        ("https://s3.amazonaws.com/echo.api/é.pem", "characters"),
        ("", "missing"),
    ],
)
def test_invalid_cert_urls(url: str, reason: str) -> None:
    with pytest.raises(VerificationFailed, match=reason):
        check_cert_url(url)


# -- 2. the chain -----------------------------------------------------------------------------------
def test_a_valid_chain_and_signature_pass_and_the_chain_is_fetched_once(
    verifier: AlexaVerifier, pki: PKI, mirror: ChainMirror
) -> None:
    url = mirror.publish("once.pem", pki.signer)
    before = mirror.fetches.count("/echo.api/once.pem")
    for index in range(20):
        body = body_of(envelope(intent=f"Intent{index}"))
        verifier.verify_signature(pki.signer.headers(body, url), body)
    assert mirror.fetches.count("/echo.api/once.pem") - before == 1


@pytest.mark.parametrize(
    ("signer", "reason"),
    [
        ("expired", "not valid at validation time"),
        ("not_yet_valid", "not valid at validation time"),
        ("wrong_name", "no matching subjectAltName"),
        ("wildcard", "does not name echo-api.amazon.com"),
        ("untrusted", "not valid"),
    ],
)
def test_bad_chains_are_refused(verifier: AlexaVerifier, pki: PKI, mirror: ChainMirror, signer: str, reason: str):
    url = mirror.publish(f"{signer}.pem", getattr(pki, signer))
    body = body_of(envelope())
    with pytest.raises(VerificationFailed, match=reason):
        verifier.verify_signature(getattr(pki, signer).headers(body, url), body)


def test_a_chain_that_cannot_be_fetched_or_read_is_refused(
    verifier: AlexaVerifier, pki: PKI, mirror: ChainMirror
) -> None:
    body = body_of(envelope())
    with pytest.raises(VerificationFailed, match="could not be fetched"):
        verifier.verify_signature(pki.signer.headers(body, "https://s3.amazonaws.com/echo.api/absent.pem"), body)
    mirror.chains["/echo.api/garbage.pem"] = b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
    with pytest.raises(VerificationFailed, match="not PEM"):
        verifier.verify_signature(pki.signer.headers(body, "https://s3.amazonaws.com/echo.api/garbage.pem"), body)


def test_a_cached_chain_is_fetched_again_after_it_expires(pki: PKI, mirror: ChainMirror) -> None:
    now = [time.time()]
    verifier = AlexaVerifier([SKILL_ID], Store([pki.root.cert]), mirror=mirror.url, clock=lambda: now[0])
    url = mirror.publish("ttl.pem", pki.signer)
    body = body_of(envelope())
    verifier.verify_signature(pki.signer.headers(body, url), body)
    now[0] += 25 * 3600  # past the day a chain is trusted without a fresh fetch
    verifier.verify_signature(pki.signer.headers(body, url), body)
    assert mirror.fetches.count("/echo.api/ttl.pem") == 2


def test_a_trust_store_without_the_root_refuses_the_good_chain(pki: PKI, mirror: ChainMirror) -> None:
    other = PKI()
    verifier = AlexaVerifier([SKILL_ID], Store([other.root.cert]), mirror=mirror.url)
    url = mirror.publish("good-elsewhere.pem", pki.signer)
    body = body_of(envelope())
    with pytest.raises(VerificationFailed, match="not valid"):
        verifier.verify_signature(pki.signer.headers(body, url), body)


# -- 3. the signature ---------------------------------------------------------------------------------
def test_a_tampered_body_is_refused(verifier: AlexaVerifier, pki: PKI, mirror: ChainMirror) -> None:
    url = mirror.publish("good.pem", pki.signer)
    body = body_of(envelope(slots={"question": "what is the contract"}))
    headers = pki.signer.headers(body, url)
    verifier.verify_signature(headers, body)
    tampered = body.replace(b"contract", b"Contract")
    with pytest.raises(VerificationFailed, match="does not match"):
        verifier.verify_signature(headers, tampered)
    # The same JSON re-serialized is different bytes: the signature is over the raw body only.
    with pytest.raises(VerificationFailed, match="does not match"):
        verifier.verify_signature(headers, body.replace(b",", b", "))


def test_a_signature_by_another_key_or_malformed_is_refused(
    verifier: AlexaVerifier, pki: PKI, mirror: ChainMirror
) -> None:
    url = mirror.publish("good.pem", pki.signer)
    body = body_of(envelope())
    forged = {**pki.signer.headers(body, url), "Signature-256": pki.wrong_name.sign(body)}
    with pytest.raises(VerificationFailed, match="does not match"):
        verifier.verify_signature(forged, body)
    with pytest.raises(VerificationFailed, match="not base64"):
        verifier.verify_signature({**forged, "Signature-256": "***"}, body)
    with pytest.raises(VerificationFailed, match="missing"):
        verifier.verify_signature({"SignatureCertChainUrl": url}, body)


# -- 4. the timestamp, 5. the skill id ---------------------------------------------------------------
def test_timestamps_within_150_s_pass_and_stale_or_future_ones_are_refused() -> None:
    now = time.time()
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    check_envelope(envelope(timestamp=moment - dt.timedelta(seconds=140)), [SKILL_ID], now)
    check_envelope(envelope(timestamp=moment + dt.timedelta(seconds=140)), [SKILL_ID], now)
    for offset in (-151, 151, -86400):
        with pytest.raises(VerificationFailed, match="150 s"):
            check_envelope(envelope(timestamp=moment + dt.timedelta(seconds=offset)), [SKILL_ID], now)
    # Skill events (enabled, disabled, account linked...) may arrive up to an hour late.
    event = envelope("AlexaSkillEvent.SkillEnabled", timestamp=moment - dt.timedelta(seconds=3000))
    check_envelope(event, [SKILL_ID], now)
    late = envelope("AlexaSkillEvent.SkillEnabled", timestamp=moment - dt.timedelta(seconds=3700))
    with pytest.raises(VerificationFailed, match="3600 s"):
        check_envelope(late, [SKILL_ID], now)
    broken = envelope()
    broken["request"]["timestamp"] = "yesterday"
    with pytest.raises(VerificationFailed, match="ISO-8601"):
        check_envelope(broken, [SKILL_ID], now)


def test_only_allowed_skill_ids_pass() -> None:
    now = time.time()
    check_envelope(envelope(), ["amzn1.ask.skill.other", SKILL_ID], now)
    with pytest.raises(VerificationFailed, match="does not serve"):
        check_envelope(envelope(skill_id="amzn1.ask.skill.someone-else"), [SKILL_ID], now)
    older = envelope()
    del older["context"]  # older requests carry it in the session only
    check_envelope(older, [SKILL_ID], now)
    anonymous = envelope()
    del anonymous["context"], anonymous["session"]
    with pytest.raises(VerificationFailed, match="does not serve"):
        check_envelope(anonymous, [SKILL_ID], now)


# -- outbound fetches a caller can trigger ------------------------------------------------------------
def test_forged_requests_with_new_urls_start_a_bounded_number_of_fetches(pki: PKI, mirror: ChainMirror) -> None:
    from modelfn.security import alexa_verifier

    verifier = AlexaVerifier([SKILL_ID], Store([pki.root.cert]), mirror=mirror.url)
    body = body_of(envelope())
    before = len(mirror.fetches)
    refused = []
    for index in range(40):  # each a new, well-formed URL that the mirror does not have
        url = f"https://s3.amazonaws.com/echo.api/forged-{index}.pem"
        with pytest.raises(VerificationFailed) as caught:
            verifier.verify_signature(pki.signer.headers(body, url), body)
        refused.append(caught.value.message)
    assert len(mirror.fetches) - before == alexa_verifier.MAX_FETCHES_PER_MINUTE
    assert (
        refused.count("too many new certificate chain URLs; not fetched") == 40 - alexa_verifier.MAX_FETCHES_PER_MINUTE
    )
    with pytest.raises(VerificationFailed, match="could not be fetched"):  # a failure is remembered, not refetched
        verifier.verify_signature(pki.signer.headers(body, "https://s3.amazonaws.com/echo.api/forged-0.pem"), body)
    assert len(mirror.fetches) - before == alexa_verifier.MAX_FETCHES_PER_MINUTE


def test_a_cached_chain_never_waits_behind_a_fetch_in_progress(pki: PKI, mirror: ChainMirror) -> None:
    verifier = AlexaVerifier([SKILL_ID], Store([pki.root.cert]), mirror=mirror.url)
    body = body_of(envelope())
    cached = mirror.publish("cached.pem", pki.signer)
    verifier.verify_signature(pki.signer.headers(body, cached), body)  # now in the cache
    stalled = mirror.publish("stalled.pem", pki.signer)
    release = mirror.stalls["/echo.api/stalled.pem"] = threading.Event()
    fetching = threading.Thread(target=verifier.verify_signature, args=(pki.signer.headers(body, stalled), body))
    fetching.start()
    try:
        deadline = time.monotonic() + 30
        while "/echo.api/stalled.pem" not in mirror.fetches:  # the fetch is under way, and stalls
            assert time.monotonic() < deadline and fetching.is_alive()
            time.sleep(0.01)
        for _ in range(20):  # answered while the other fetch still hangs: nothing serialises them
            verifier.verify_signature(pki.signer.headers(body, cached), body)
        assert fetching.is_alive() and not release.is_set()
    finally:
        release.set()
        fetching.join(30)
