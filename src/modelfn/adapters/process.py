"""What every adapter does once per process, before the first request: logging and thread pools."""

from __future__ import annotations

import logging
import os
import sys

from modelfn.settings import Settings


def prepare_process(settings: Settings) -> None:
    """Configure the ``modelfn`` logger and size numpy's thread pool; cheap, no heavy import."""
    configure_logging(settings.log_level)
    limit_blas_threads(settings.blas_threads)


def limit_blas_threads(threads: int) -> None:
    """Size numpy's OpenBLAS pool before numpy is imported (OpenBLAS reads it once, at load).

    An explicit ``OPENBLAS_NUM_THREADS`` from the deployment always wins.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))


def configure_logging(level: str) -> None:
    """The ``modelfn`` logger to stderr at ``level`` (platforms collect stderr); once per process."""
    logger = logging.getLogger("modelfn")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
