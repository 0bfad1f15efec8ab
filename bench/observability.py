"""What the request line, the traffic policies and a shadow cost per request, and what a scrape costs.

    python bench/observability.py [--rounds 7] [--requests 400]

In process (``ModelFunction.handle``, no HTTP), the digits model served from a registry folder
through ``digits@prod``, the same ``POST /predict`` under five set-ups, interleaved round by round
so the machine's noise hits each alike:

- the alias on one version, no request line (metrics are always recorded);
- the same with the JSON request line, written to ``/dev/null`` through the real formatter;
- a 90/10 split between two versions (a draw, a policy lookup, the canary's window);
- the split, sticky by a header (a hash of the caller's key instead of a draw);
- a shadow: each answer's copy goes to another version in the background (the foreground's time;
  copies beyond the 16 in flight are skipped and counted).

Then the time of one ``GET /metrics`` (the first, which imports prometheus-client, and the next).
Writes bench/results/observability.md and observability.png.
"""

from __future__ import annotations

import argparse
import logging
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
from charts import publish  # noqa: E402
from helpers import DIGITS, copy_function  # noqa: E402

from modelfn.adapters.dispatch import handle_request  # noqa: E402
from modelfn.function import ModelFunction  # noqa: E402
from modelfn.http import Request  # noqa: E402
from modelfn.observability.logs import JsonFormatter  # noqa: E402
from modelfn.registry import Registry, Traffic  # noqa: E402
from modelfn.runtime.cache import ModelCache  # noqa: E402
from modelfn.settings import Settings  # noqa: E402

IMAGE = {"image": [[0, 2, 13, 16, 10, 0, 0, 0]] * 8}
BASELINE = "one version, no request line"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    sink = open("/dev/null", "w")  # noqa: SIM115 - the log handler's stream for the whole run
    handler = logging.StreamHandler(sink)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("modelfn")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    with tempfile.TemporaryDirectory() as scratch:
        functions = set_ups(Path(scratch))
        body = orjson.dumps(IMAGE)
        plain = Request("POST", "/predict", body)
        sticky = [Request("POST", "/predict", body, {"X-User": f"user-{n}"}) for n in range(args.requests)]
        for name, function in functions.items():  # load every version, and the policies
            for _ in range(3):
                assert handle_request(function, plain).status == 200, name
            time.sleep(0.5)
        per_set_up: dict[str, list[float]] = {name: [] for name in functions}
        for round_index in range(args.rounds):
            names = list(functions)
            names = names[round_index % len(names) :] + names[: round_index % len(names)]
            for name in names:
                function = functions[name]
                requests = sticky if "sticky" in name else [plain] * args.requests
                started = time.perf_counter()
                for request in requests:
                    handle_request(function, request)
                per_set_up[name].append((time.perf_counter() - started) / args.requests * 1e6)
                time.sleep(0.2)  # let the shadow's copies finish before the next set-up
        scrapes = scrape_times(functions[BASELINE])
    write_results(per_set_up, scrapes, args)


def set_ups(scratch: Path) -> dict[str, ModelFunction]:
    """One function per set-up, each with its own registry alias and cache."""
    registry_root = str(scratch / "registry")
    registry = Registry.open(registry_root)
    for version in ("1", "2", "3"):
        registry.push(copy_function(scratch, DIGITS, version=version))
    policies = {
        BASELINE: (None, False),
        "one version, JSON request line": (None, True),
        "90/10 split": (Traffic(split={"1": 90, "2": 10}), False),
        "90/10 split, sticky by X-User": (Traffic(split={"1": 90, "2": 10}, sticky_header="X-User"), False),
        "shadow to another version": (Traffic(split={"1": 100}, shadow="3"), False),
    }
    functions = {}
    for index, (name, (traffic, request_log)) in enumerate(policies.items()):
        alias = f"a{index}"
        registry.promote("digits", "1", alias)
        if traffic is not None:
            registry.set_traffic("digits", alias, traffic)
        settings = Settings(model=f"{registry_root}/digits@{alias}", request_log=request_log)
        functions[name] = ModelFunction(DIGITS, settings, cache=ModelCache())
    return functions


def scrape_times(function: ModelFunction) -> dict[str, float]:
    """Milliseconds of GET /metrics: the first of the process (imports prometheus-client), then the median of 20."""
    scrape = Request("GET", "/metrics", b"")
    started = time.perf_counter()
    response = handle_request(function, scrape)
    first = (time.perf_counter() - started) * 1e3
    assert response.status == 200, response.body[:200]
    later = []
    for _ in range(20):
        started = time.perf_counter()
        handle_request(function, scrape)
        later.append((time.perf_counter() - started) * 1e3)
    return {"first": first, "next": statistics.median(later), "bytes": len(response.body)}


def write_results(per_set_up: dict[str, list[float]], scrapes: dict[str, float], args: argparse.Namespace) -> None:
    base = statistics.median(per_set_up[BASELINE])
    rows = ["| set-up | median per request (us) | over one version (us) |", "|---|---:|---:|"]
    for name, times in per_set_up.items():
        median = statistics.median(times)
        rows.append(f"| {name} | {median:,.0f} | {median - base:+,.0f} |")
    text = "\n".join(
        [
            "# Observability and traffic policies: cost per request (digits, `POST /predict`, in process)",
            "",
            f"{args.rounds} interleaved rounds of {args.requests} requests per set-up; medians of the per-round means.",
            "Every set-up records the metrics; the request line goes through the JSON formatter to /dev/null.",
            "",
            *rows,
            "",
            "| `GET /metrics` | ms |",
            "|---|---:|",
            f"| first scrape of a process (imports prometheus-client) | {scrapes['first']:,.1f} |",
            f"| later scrapes (median of 20; {scrapes['bytes']:,.0f} bytes) | {scrapes['next']:,.2f} |",
            "",
        ]
    )
    publish("observability", text, per_set_up, xlabel="microseconds per request (median, in process)",
            title="digits: POST /predict under each set-up")  # fmt: skip


if __name__ == "__main__":
    main()
