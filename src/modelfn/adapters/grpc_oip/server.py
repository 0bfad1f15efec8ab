"""The gRPC server of ``modelfn serve --grpc`` and of Cloud Run images with ``MODELFN_SERVE=grpc``.

::

    python -m modelfn.adapters.grpc_oip.server --source main.py --target handle --port 8080

It serves the function that ``main.py``'s HTTP target serves (``handle = http_function(__file__)``),
so one folder, one image and one set of settings give both protocols. HTTP/2 cleartext on one port,
as Cloud Run's ``h2c`` port and Knative's gRPC ports expect.

- **Requests received whole** by gRPC's core before a thread takes them, within
  ``MODELFN_MAX_BODY_BYTES`` (larger messages: ``RESOURCE_EXHAUSTED``): a slow client costs a
  stream, not a thread.
- **Threads** (``THREADS``, as the HTTP server reads it): calls beyond twice as many are refused at
  once with ``RESOURCE_EXHAUSTED``; calls over a model's call slots wait in modelfn's bounded queue.
- **Metrics** with ``MODELFN_METRICS_PORT``: ``GET /metrics`` over HTTP on that port, the gRPC
  calls counted under their method (``/inference.GRPCInferenceService/ModelInfer``).
- **Graceful shutdown.** On SIGTERM the server stops taking calls, health checks answer
  ``NOT_SERVING``, calls in flight get ``MODELFN_GRACEFUL_TIMEOUT_S`` to finish, then it exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from modelfn.adapters.grpc_oip.service import InferenceService

if TYPE_CHECKING:
    from modelfn.function import Servable
    from modelfn.settings import Settings

log = logging.getLogger("modelfn")


def load_servable(source: str, target: str) -> Servable:
    """What ``source``'s ``target`` serves (``http_function``'s ``modelfn_function``), imported as
    functions-framework imports it: the file's folder first on the path."""
    path = Path(source).resolve()
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("main", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["main"] = module
    spec.loader.exec_module(module)
    handler = getattr(module, target, None)
    servable = getattr(handler, "modelfn_function", None)
    if servable is None:
        raise SystemExit(f"{path}: {target!r} is not a modelfn HTTP target (http_function(__file__))")
    return servable


def build_server(servable: Servable, settings: Settings, threads: int) -> tuple[grpc.Server, InferenceService]:
    """The gRPC server (not started, no port) and its servicer."""
    service = InferenceService(servable)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=threads, thread_name_prefix="modelfn-grpc"),
        handlers=service.handlers(),
        # Headroom over the threads: a call counts until gRPC has processed its completion, so a
        # client (or Cloud Run at its concurrency) that sends the next call at once would otherwise
        # meet RESOURCE_EXHAUSTED now and then (the benchmark at c8 did). Beyond it: refused at once.
        maximum_concurrent_rpcs=2 * threads,
        options=[
            ("grpc.max_receive_message_length", settings.max_body_bytes),
            # One process per port: a second server on the same port is an error, not a silent share.
            ("grpc.so_reuseport", 0),
        ],
    )
    return server, service


def serve(servable: Servable, settings: Settings, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then drain within the graceful timeout."""
    threads = int(os.environ.get("THREADS", max(8, 4 * (os.cpu_count() or 1))))
    server, service = build_server(servable, settings, threads)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if server.add_insecure_port(address) == 0:
        raise SystemExit(f"cannot listen on {address}")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    log.info("serving gRPC (inference.GRPCInferenceService, grpc.health.v1.Health) on %s", address)
    metrics = serve_metrics(servable, host, settings.metrics_port) if settings.metrics_port else None
    if settings.prefetch:
        servable.prefetch()
    stop.wait()
    service.draining.set()
    since = time.monotonic()
    log.info("SIGTERM: no new calls; finishing those in flight (at most %g s)", settings.graceful_timeout_s)
    server.stop(grace=settings.graceful_timeout_s).wait()
    if metrics is not None:
        metrics.shutdown()
    log.info("stopped after draining for %.2f s", time.monotonic() - since)
    for handler in logging.getLogger("modelfn").handlers:
        handler.flush()


def serve_metrics(servable: Servable, host: str, port: int) -> Any:
    """``GET /metrics`` over HTTP on ``port``, answered by the same route (and credentials) as on the HTTP server.

    gRPC has no scrape protocol; Prometheus and Cloud Run's sidecars scrape HTTP. Only that route is
    served: the standard library's threaded server, for one scraper's requests, with a socket timeout.
    """
    import http.server

    from modelfn.adapters.dispatch import handle_request
    from modelfn.http import Headers, Request

    class Scrape(http.server.BaseHTTPRequestHandler):
        timeout = 10  # a scraper that sends half a request is dropped, not waited for

        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            request = Request("GET", "/metrics", b"", Headers(dict(self.headers.items())))
            response = handle_request(servable, request)
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)

        def log_message(self, *args: Any) -> None:  # the request log is modelfn's own
            pass

    server = http.server.ThreadingHTTPServer((host, port), Scrape)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="modelfn-metrics", daemon=True).start()
    log.info("serving GET /metrics on http://%s:%d", host, port)
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m modelfn.adapters.grpc_oip.server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--source", required=True, help="The function's main.py.")
    parser.add_argument("--target", default="handle", help="Its HTTP target (default: handle).")
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8080)))
    args = parser.parse_args(argv)
    servable: Any = load_servable(args.source, args.target)
    serve(servable, servable.settings, args.host, args.port)


if __name__ == "__main__":
    main()
