"""The HTTP server of ``modelfn serve`` and of Cloud Run images: functions-framework's app under gunicorn.

::

    python -m modelfn.adapters.server --source main.py --target handle --port 8080

The app is functions-framework's own (``functions_framework.create_app``), so a
function behaves as on Cloud Functions; only the server around it is set for
serverless platforms:

- **Graceful shutdown.** On SIGTERM (Cloud Run sends it, then SIGKILL 10 s later)
  the worker stops accepting connections, finishes the requests in flight
  within ``MODELFN_GRACEFUL_TIMEOUT_S`` (8 s), logs what it did, flushes its
  log handlers and exits 0. functions-framework's own command keeps gunicorn's
  30 s, past Cloud Run's 10.
- **Requests received whole** (:mod:`modelfn.adapters.receiving`): a request's head
  and body are read by the main loop within ``MODELFN_HEAD_TIMEOUT_S`` and
  ``MODELFN_RECEIVE_TIMEOUT_S`` before a thread takes it, so clients that send half
  a request cost a socket, not a thread; refusals are JSON.
- **gRPC** with ``MODELFN_SERVE=grpc``: the Open Inference Protocol over gRPC on the same port
  instead (:mod:`modelfn.adapters.grpc_oip.server`), for a Cloud Run service with an ``h2c`` port.
- **Threads** (``THREADS``, as functions-framework reads it): one per request the
  platform may send at once. Requests over a model's call slots then wait in
  modelfn's bounded queue, where overload is refused at once with 503, not in
  gunicorn's unbounded one, where it would only add latency.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

import gunicorn.app.base

from modelfn.adapters.receiving import ReceiveLimits, worker_class

if TYPE_CHECKING:
    from modelfn.settings import Settings

log = logging.getLogger("modelfn")


class _Server(gunicorn.app.base.BaseApplication):
    def __init__(self, app: Any, options: dict[str, Any]) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self.application


def options(host: str, port: int, graceful_timeout_s: float, limits: ReceiveLimits | None = None) -> dict[str, Any]:
    """gunicorn's settings: one process, a thread per concurrent request, requests received whole first."""
    return {
        "bind": f"{host}:{port}",
        "workers": int(os.environ.get("WORKERS", 1)),
        "threads": int(os.environ.get("THREADS", max(8, 4 * (os.cpu_count() or 1)))),
        # gthread, but each request is read whole by the main loop within time and size limits
        # before a thread takes it: slow or partial clients cannot hold the threads (receiving.py).
        "worker_class": worker_class(limits or ReceiveLimits()),
        # The watchdog: the arbiter restarts a worker whose main loop has not checked in for this
        # long. Requests run on the threads, so a slow model never trips it; a wedged loop does.
        "timeout": int(os.environ.get("GUNICORN_WORKER_TIMEOUT_S", 60)),
        "graceful_timeout": max(1, round(graceful_timeout_s)),  # gunicorn takes whole seconds
        "loglevel": os.environ.get("GUNICORN_LOG_LEVEL", "error"),
        "limit_request_line": 8190,  # gunicorn's largest; the whole head is bounded before (16 KiB)
        "post_worker_init": _log_sigterm,
        "worker_exit": _flush_on_exit,
        # gunicorn's runtime control socket (gunicorn 24+) is written into the working directory:
        # in an image that runs as a non-root user with --read-only it failed at every start, and
        # nothing here manages gunicorn at run time.
        "control_socket_disable": True,
    }


def _log_sigterm(worker: Any) -> None:
    """Say when a SIGTERM starts the drain, then let gunicorn's own handler stop accepting."""
    handle_exit = worker.handle_exit

    def on_sigterm(signum: int, frame: Any) -> None:
        worker.modelfn_stopping_since = time.monotonic()
        log.info("SIGTERM: no new connections; finishing %d in flight (at most %g s)",
                 worker.nr_conns, worker.cfg.graceful_timeout)  # fmt: skip
        handle_exit(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def _flush_on_exit(server: Any, worker: Any) -> None:
    since = getattr(worker, "modelfn_stopping_since", None)
    if since is not None:
        log.info("stopped after draining for %.2f s; %d connection(s) left", time.monotonic() - since,
                 worker.nr_conns)  # fmt: skip
    for handler in logging.getLogger("modelfn").handlers:
        handler.flush()
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m modelfn.adapters.server", description=__doc__.split("\n")[0])
    parser.add_argument("--source", required=True, help="The function's main.py.")
    parser.add_argument("--target", default="handle", help="The function in it (default: handle).")
    # A container listens on every interface; `modelfn serve` passes 127.0.0.1.
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8080)))
    args = parser.parse_args(argv)

    from modelfn.settings import Settings

    settings = Settings.from_env()
    if settings.serve == "grpc":  # the same image, the Open Inference Protocol over gRPC on the port
        from modelfn.adapters.grpc_oip.server import load_servable, serve

        serve(load_servable(args.source, args.target), settings, args.host, args.port)
        return
    import functions_framework

    app = functions_framework.create_app(args.target, args.source)
    _Server(app, options(args.host, args.port, settings.graceful_timeout_s, receive_limits(settings))).run()


def receive_limits(settings: Settings) -> ReceiveLimits:
    """The receiving stage's limits from the settings (``MODELFN_HEAD_TIMEOUT_S`` and the rest)."""
    return ReceiveLimits(
        head_bytes=settings.max_head_bytes,
        body_bytes=settings.max_body_bytes,
        head_timeout_s=settings.head_timeout_s,
        receive_timeout_s=settings.receive_timeout_s,
        buffer_bytes=max(settings.receive_buffer_mb * 1024 * 1024, settings.max_body_bytes),
    )


if __name__ == "__main__":
    main()
