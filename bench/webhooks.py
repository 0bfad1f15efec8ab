"""What the conversation routes cost on top of the plain JSON route, for the helpdesk function.

    python bench/webhooks.py [--rounds 7] [--requests 400]

In process (``ModelFunction.handle``, no HTTP), the same question through four routes, interleaved
round by round so the machine's noise hits each alike: ``POST /predict``; ``POST /dialogflow``
(ES, secret header); ``POST /alexa`` with Amazon's checks and the certificate chain cached; and
the first ``/alexa`` request of a process, which fetches the chain (from a local HTTP mirror) and
validates it. Amazon is played by a CA made here (``tests/alexa_pki.py``).
Writes bench/results/webhooks.md and webhooks.png.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(HERE))

import orjson  # noqa: E402
from alexa_pki import PKI, SKILL_ID, body_of, chain_mirror, envelope  # noqa: E402
from charts import publish  # noqa: E402

from modelfn.adapters.dispatch import handle_request  # noqa: E402
from modelfn.function import ModelFunction  # noqa: E402
from modelfn.http import Request  # noqa: E402
from modelfn.runtime.cache import ModelCache  # noqa: E402
from modelfn.settings import Settings  # noqa: E402

HELPDESK = ROOT / "functions" / "helpdesk"
QUESTION = "how do I deploy my model to cloud run"
SECRET = "bench-secret"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    pki = PKI()
    with chain_mirror() as mirror, tempfile.TemporaryDirectory() as scratch:
        url = mirror.publish("echo-api-cert.pem", pki.signer)
        trust = pki.write_trust_store(Path(scratch) / "roots.pem")
        settings = Settings(alexa_skill_ids=SKILL_ID, alexa_trust_store=str(trust), alexa_cert_mirror=mirror.url,
                            dialogflow_secret=SECRET)  # fmt: skip
        function = ModelFunction(HELPDESK, settings, cache=ModelCache())
        alexa_body = body_of(envelope(slots={"question": QUESTION}))
        es_body = orjson.dumps({"queryResult": {"queryText": QUESTION}})
        requests = {
            "POST /predict": Request("POST", "/predict", orjson.dumps({"text": QUESTION})),
            "POST /dialogflow (ES)": Request("POST", "/dialogflow", es_body, {"X-Webhook-Secret": SECRET}),
            "POST /alexa (chain cached)": Request("POST", "/alexa", alexa_body, pki.signer.headers(alexa_body, url)),
        }
        for request in requests.values():  # load the model, fetch the chain once
            assert handle_request(function, request).status == 200
        per_route: dict[str, list[float]] = {name: [] for name in requests}
        for round_index in range(args.rounds):
            names = list(requests)
            names = names[round_index % len(names) :] + names[: round_index % len(names)]
            for name in names:
                started = time.perf_counter()
                for _ in range(args.requests):
                    handle_request(function, requests[name])
                per_route[name].append((time.perf_counter() - started) / args.requests * 1e6)
        first = first_alexa_requests(pki, mirror.url, trust, url, alexa_body, args.rounds * 3)
    write_results(per_route, first, args)


def first_alexa_requests(pki: PKI, mirror: str, trust: Path, url: str, body: bytes, count: int) -> list[float]:
    """The first /alexa request of a fresh verifier each time: fetch, parse and validate the chain, verify."""
    from modelfn.security.alexa_verifier import AlexaVerifier, load_trust_store

    times = []
    for _ in range(count):
        verifier = AlexaVerifier([SKILL_ID], load_trust_store(str(trust)), mirror=mirror)
        headers = pki.signer.headers(body, url)
        started = time.perf_counter()
        verifier.verify_signature(headers, body)
        times.append((time.perf_counter() - started) * 1e6)
    return times


def write_results(per_route: dict[str, list[float]], first: list[float], args: argparse.Namespace) -> None:
    base = statistics.median(per_route["POST /predict"])
    rows = [
        "| route | median per request (us) | over `/predict` (us) |",
        "|---|---:|---:|",
    ]
    for name, times in per_route.items():
        median = statistics.median(times)
        rows.append(f"| {name} | {median:,.0f} | {median - base:+,.0f} |")
    rows.append(f"| first `/alexa` of a process: chain fetched and validated (verification alone) | "
                f"{statistics.median(first):,.0f} | |")  # fmt: skip
    text = "\n".join(
        [
            "# Conversation routes: cost over the plain JSON route (helpdesk, in process)",
            "",
            f"{args.rounds} interleaved rounds of {args.requests} requests per route; medians of the per-round means.",
            "",
            *rows,
            "",
        ]
    )
    publish("webhooks", text, per_route, xlabel="microseconds per request (median, in process)",
            title="helpdesk: one question through each route", colors=("#2563eb", "#60a5fa", "#93c5fd"))  # fmt: skip


if __name__ == "__main__":
    main()
