"""What every adapter does once per process, before the first request: the servable, logging, thread pools."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from modelfn.function import ModelFunction, Servable
from modelfn.runtime.memory import limit_arenas
from modelfn.settings import Settings

if TYPE_CHECKING:
    from modelfn.group import FunctionGroup


def build_servable(
    source: str | Path, models: list[str] | None, settings: Settings | None
) -> tuple[ModelFunction | FunctionGroup, Settings]:
    """What serves ``source``'s folder (``models``: one sub-folder each), with the process set up.

    ``source`` is the function folder or a file in it (``__file__``). Configures the ``modelfn``
    logger and sizes numpy's thread pool; cheap, no I/O, no heavy import.
    """
    folder = Path(source)
    if folder.suffix == ".py":  # decided by name: a stat() here would be start-up I/O
        folder = folder.parent
    settings = Settings.from_env() if settings is None else settings
    configure_logging(settings.log_level, settings.log_format, request_log=settings.request_log)
    limit_blas_threads(settings.blas_threads)
    limit_arenas(settings.malloc_arena_max)  # before the threads that load models start
    if models:
        from modelfn.group import FunctionGroup

        return FunctionGroup(folder, models, settings), settings
    return ModelFunction(folder, settings), settings


def load_and_wait(function: Servable, wait_s: float) -> bool:
    """Start loading the model(s) and wait for them on this thread, at most ``wait_s``; whether they are ready.

    For Lambda's init and SnapStart's snapshot, where a background load would be frozen with the sandbox.
    """
    function.prefetch()
    deadline = time.monotonic() + wait_s
    while not function.ready() and time.monotonic() < deadline:
        time.sleep(0.005)
    return function.ready()


def limit_blas_threads(threads: int) -> None:
    """Size numpy's OpenBLAS pool before numpy is imported (OpenBLAS reads it once, at load).

    An explicit ``OPENBLAS_NUM_THREADS`` from the deployment always wins.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))


def configure_logging(level: str, log_format: str = "auto", *, request_log: bool = True) -> None:
    """The ``modelfn`` logger to stderr at ``level`` (platforms collect stderr); once per process.

    ``log_format``: ``json`` (one object per line, see :mod:`modelfn.observability.logs`), ``text``, or ``auto``:
    JSON unless stderr is a terminal.
    """
    logger = logging.getLogger("modelfn")
    logger.setLevel(level.upper())
    # The request lines are INFO: they follow the level, and MODELFN_REQUEST_LOG=0 turns them off alone.
    logging.getLogger("modelfn.request").setLevel(logging.NOTSET if request_log else logging.WARNING)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        if log_format == "json" or (log_format == "auto" and not sys.stderr.isatty()):
            from modelfn.observability.logs import JsonFormatter

            handler.setFormatter(JsonFormatter())
        else:
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
