"""Streamed generation: modelfn beside a hand-written function on the same engine and model, in one run.

    python bench/generative.py [--runs 5] [--seconds 6] [--rounds 3] [--tokens 128]

The model is functions/chat with its end token moved to one it never writes, so that every answer is
exactly ``--tokens`` tokens long on both systems (greedy search, the same prompt). Systems, each under
functions-framework as Cloud Functions gen2 runs it:

- modelfn: the chat function, ``POST /openai/v1/completions`` with ``stream: true``;
- hand-written: ``bench/floors/handwritten_generate.py``, ONNX Runtime GenAI loaded at import and the
  same OpenAI chunks written as server-sent events by a plain loop.

Cold start to the first token is spawn to the first streamed chunk (systems interleaved and rotated,
median of ``--runs``). Then, warm, ``c`` clients (1 and 4) send streamed requests back to back for
``--seconds`` in ``--rounds`` rotated rounds: time to first token (request sent to first chunk read)
and each stream's tokens per second (chunks after the first over the time they took), medians, and
every stream's tokens per second together.

The embeddings route the same way: functions/embed's ``POST /openai/v1/embeddings`` against
``bench/floors/handwritten_embed.py`` (the same tokenizer, model, pooling and answer, written by hand),
and modelfn again with one ONNX Runtime thread (``MODELFN_ORT_INTRA_OP_THREADS=1``):
cold start to the first embedding, and requests per second and p50 latency of one text a request at
c1 and c4. Writes bench/results/generative.md and generative.png.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import charts  # noqa: E402
import coldstart  # noqa: E402

CHAT = ROOT / "functions" / "chat"
EMBED = ROOT / "functions" / "embed"
QUESTION = {"model": "embed", "input": "how do I deploy my model to cloud run", "encoding_format": "float"}
PROMPT = "<|user|>what is modelfn<|assistant|>"
LEVELS = (1, 4)


def long_answers(scratch: Path, tokens: int) -> Path:
    """A copy of functions/chat whose answers run to ``tokens`` (its end token moved; the copy re-pinned)."""
    import hashlib
    import shutil

    import yaml

    folder = scratch / "chat"
    shutil.copytree(CHAT, folder, ignore=shutil.ignore_patterns(".modelfn", "__pycache__", "train.py"))
    config_path = folder / "model" / "genai_config.json"
    config = json.loads(config_path.read_text())
    config["model"]["eos_token_id"] = 0
    config_path.write_text(json.dumps(config))
    contract = yaml.safe_load((folder / "modelfn.yaml").read_text())
    contract["artifact"]["files"]["genai_config.json"] = hashlib.sha256(config_path.read_bytes()).hexdigest()
    contract["generation"].update(max_prompt_tokens=16, max_tokens=tokens, max_concurrent=8)
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    return folder


def systems(folder: Path) -> dict[str, tuple[list[str], str, dict[str, str]]]:
    """Name -> (server command without its port, path, environment)."""
    return {
        "modelfn": ([*coldstart.FF, "--source", str(folder / "main.py")], "/openai/v1/completions", {}),
        "hand-written": ([*coldstart.FF, "--source", str(HERE / "floors" / "handwritten_generate.py")], "/",
                         {"BENCH_MODEL": str(folder / "model")}),
    }  # fmt: skip


def stream(url: str, tokens: int) -> tuple[float, float, int]:
    """One streamed completion: (seconds to its first chunk, tokens per second after it, chunks)."""
    body = {"model": "chat", "prompt": PROMPT, "max_tokens": tokens, "stream": True}
    started = time.perf_counter()
    first = last = 0.0
    chunks = 0
    with requests.post(url, json=body, stream=True, timeout=120) as answer:
        answer.raise_for_status()
        for line in answer.iter_lines():
            if not line.startswith(b"data: {"):
                continue
            if not json.loads(line[6:])["choices"][0]["text"]:
                continue
            last = time.perf_counter()
            if chunks == 0:
                first = last
            chunks += 1
    rate = (chunks - 1) / (last - first) if chunks > 1 and last > first else float("nan")
    return first - started, rate, chunks


def first_answer(command: list[str], env: dict[str, str], answered: Callable[[int], bool]) -> float:
    """Seconds from spawning ``command`` to ``answered(port)`` being true; refused connections are retried."""
    port = coldstart.free_port()
    started = time.perf_counter()
    with coldstart.server([*command, "--port", str(port)], env) as process:
        while True:
            try:
                if answered(port):
                    return time.perf_counter() - started
                raise RuntimeError(f"{command} answered, but not with what was asked")
            except requests.ConnectionError:
                if process.poll() is not None:
                    raise RuntimeError(f"{command} exited with {process.returncode}") from None
                time.sleep(0.002)


def cold_start(command: list[str], path: str, env: dict[str, str], tokens: int) -> float:
    """Seconds from spawn to the first streamed chunk."""

    def first_token(port: int) -> bool:
        body = {"model": "chat", "prompt": PROMPT, "max_tokens": tokens, "stream": True}
        with requests.post(f"http://127.0.0.1:{port}{path}", stream=True, timeout=120, json=body) as answer:
            return any(
                line.startswith(b"data: {") and json.loads(line[6:])["choices"][0]["text"]
                for line in answer.iter_lines()
            )  # any() stops at the first token's chunk

    return first_answer(command, env, first_token)


def clients_for(clients: int, seconds: float, one: Callable[[], None]) -> float:
    """``clients`` threads each calling ``one()`` back to back for ``seconds``: the seconds they took in all."""
    stop = time.perf_counter() + seconds

    def client() -> None:
        while time.perf_counter() < stop:
            one()

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def ready(call: Callable[[], object]) -> None:
    """``call()`` once it connects (the server may still be starting), within a minute."""
    deadline = time.monotonic() + 60
    while True:
        try:
            call()
            return
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def load(url: str, clients: int, seconds: float, tokens: int) -> tuple[list[float], list[float], float]:
    """``clients`` threads streaming back to back: every TTFT, every stream's rate, and all tokens per second."""
    ttfts: list[float] = []
    rates: list[float] = []
    total = [0]
    lock = threading.Lock()

    def one() -> None:
        ttft, rate, chunks = stream(url, tokens)
        with lock:
            ttfts.append(ttft)
            rates.append(rate)
            total[0] += chunks

    took = clients_for(clients, seconds, one)  # before total[0] is read
    return ttfts, rates, total[0] / took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        table = systems(long_answers(Path(scratch), args.tokens))
        names = list(table)
        starts: dict[str, list[float]] = {name: [] for name in names}
        for run in range(args.runs):
            for name in coldstart.rotated(names, run):
                starts[name].append(cold_start(*table[name], args.tokens))
        results: dict[tuple[str, int], dict[str, list[float]]] = {
            (name, level): {"ttft": [], "rate": [], "total": []} for name in names for level in LEVELS
        }
        for round_ in range(args.rounds):
            for name in coldstart.rotated(names, round_):
                command, path, env = table[name]
                port = coldstart.free_port()
                with coldstart.server([*command, "--port", str(port)], env):
                    url = f"http://127.0.0.1:{port}{path}"
                    ready(partial(stream, url, args.tokens))  # the load and one whole answer first
                    for level in LEVELS:
                        ttfts, rates, total = load(url, level, args.seconds, args.tokens)
                        entry = results[(name, level)]
                        entry["ttft"].append(statistics.median(ttfts))
                        entry["rate"].append(statistics.median(rates))
                        entry["total"].append(total)
    write(starts, results, args, embeddings(args))


def embed_systems() -> dict[str, tuple[list[str], str, dict[str, str]]]:
    return {
        "modelfn": ([*coldstart.FF, "--source", str(EMBED / "main.py")], "/openai/v1/embeddings", {}),
        # ONNX Runtime's pool without spinning (modelfn's default) wakes its second thread on every
        # parallel operator: for a model this small, one thread a request is faster.
        "modelfn, one ONNX Runtime thread": ([*coldstart.FF, "--source", str(EMBED / "main.py")],
                                             "/openai/v1/embeddings", {"MODELFN_ORT_INTRA_OP_THREADS": "1"}),
        "hand-written": ([*coldstart.FF, "--source", str(HERE / "floors" / "handwritten_embed.py")], "/",
                         {"BENCH_MODEL": str(EMBED)}),
    }  # fmt: skip


def embed_cold_start(command: list[str], path: str, env: dict[str, str]) -> float:
    def first_embedding(port: int) -> bool:
        answer = requests.post(f"http://127.0.0.1:{port}{path}", json=QUESTION, timeout=120)
        return answer.status_code == 200 and len(answer.json()["data"][0]["embedding"]) == 64

    return first_answer(command, env, first_embedding)


def embed_load(url: str, clients: int, seconds: float) -> tuple[float, float]:
    """``clients`` threads, one session each, sending one text a request: (requests per second, p50 seconds)."""
    latencies: list[float] = []
    lock = threading.Lock()
    sessions = threading.local()

    def one() -> None:
        if not hasattr(sessions, "session"):
            sessions.session = requests.Session()
        started = time.perf_counter()
        sessions.session.post(url, json=QUESTION, timeout=60).raise_for_status()
        with lock:
            latencies.append(time.perf_counter() - started)

    took = clients_for(clients, seconds, one)
    return len(latencies) / took, statistics.median(latencies)


def embeddings(
    args: argparse.Namespace,
) -> tuple[dict[str, list[float]], dict[tuple[str, int], list[tuple[float, float]]]]:
    table = embed_systems()
    names = list(table)
    starts: dict[str, list[float]] = {name: [] for name in names}
    for run in range(args.runs):
        for name in coldstart.rotated(names, run):
            starts[name].append(embed_cold_start(*table[name]))
    loads: dict[tuple[str, int], list[tuple[float, float]]] = {(n, c): [] for n in names for c in LEVELS}
    for round_ in range(args.rounds):
        for name in coldstart.rotated(names, round_):
            command, path, env = table[name]
            port = coldstart.free_port()
            with coldstart.server([*command, "--port", str(port)], env):
                url = f"http://127.0.0.1:{port}{path}"
                ready(partial(requests.post, url, json=QUESTION, timeout=60))  # load errors: embed_load raises
                for level in LEVELS:
                    loads[(name, level)].append(embed_load(url, level, args.seconds))
    return starts, loads


def write(starts: dict[str, list[float]], results: dict, args: argparse.Namespace, embedded: tuple) -> None:
    med = statistics.median
    base = {level: results[("hand-written", level)] for level in LEVELS}
    lines = [
        f"Streamed generation of functions/chat, {args.tokens} tokens an answer (greedy), under functions-framework; "
        f"cold start median of {args.runs} interleaved runs, load {args.seconds:g} s x {args.rounds} rotated rounds "
        f"(medians); {os.cpu_count()} CPUs, Python {sys.version.split()[0]}.",
        "",
        "| system | cold start to first token | vs hand-written | clients | TTFT | vs hand-written "
        "| tokens/s a stream | vs hand-written | tokens/s in all |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in starts:
        start = med(starts[name])
        for level in LEVELS:
            entry = results[(name, level)]
            ttft, rate, total = med(entry["ttft"]), med(entry["rate"]), med(entry["total"])
            lines.append(
                f"| {name} | {start * 1000:,.0f} ms | {start / med(starts['hand-written']):.2f}x "
                f"| {level} | {ttft * 1000:.1f} ms | {ttft / med(base[level]['ttft']):.2f}x | {rate:,.0f} "
                f"| {rate / med(base[level]['rate']):.2f}x | {total:,.0f} |"
            )
    embed_starts, loads = embedded
    lines += [
        "",
        "The embeddings route, one text a request (functions/embed):",
        "",
        "| system | cold start to first embedding | vs hand-written | clients | req/s | vs hand-written | p50 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in embed_starts:
        start = med(embed_starts[name])
        for level in LEVELS:
            rate = med([r for r, _ in loads[(name, level)]])
            base_rate = med([r for r, _ in loads[("hand-written", level)]])
            p50 = med([p for _, p in loads[(name, level)]])
            lines.append(
                f"| {name} | {start * 1000:,.0f} ms | {start / med(embed_starts['hand-written']):.2f}x | {level} "
                f"| {rate:,.0f} | {rate / base_rate:.2f}x | {p50 * 1000:.2f} ms |"
            )
    timings = {f"{name}, TTFT at c{level}": [t * 1000 for t in results[(name, level)]["ttft"]]
               for name in starts for level in LEVELS}  # fmt: skip
    shades = ("#2563eb", "#2563eb", "#9ca3af", "#9ca3af")
    charts.publish("generative", "\n".join(lines) + "\n", timings, xlabel="time to first token (ms)",
                   title="Streamed generation: time to first token", colors=shades)  # fmt: skip


if __name__ == "__main__":
    main()
