"""One settings object, read once at the entrypoint and passed down.

No other module reads the environment. Every field has its variable next to it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

_PREFIX = "MODELFN_"


@dataclass(frozen=True, slots=True)
class Settings:
    """Runtime limits and tuning. Each field is read from ``MODELFN_<FIELD>``."""

    #: Largest request body accepted, in bytes (``MODELFN_MAX_BODY_BYTES``). Over it: 413.
    max_body_bytes: int = 4 * 1024 * 1024
    #: Most elements one input tensor may declare (``MODELFN_MAX_TENSOR_ELEMENTS``).
    max_tensor_elements: int = 1 << 22
    #: How long a request waits for a model load in progress, in seconds
    #: (``MODELFN_LOAD_WAIT_S``). Past it the request gets 503 with Retry-After.
    load_wait_s: float = 60.0
    #: ONNX Runtime intra-op threads (``MODELFN_ORT_INTRA_OP_THREADS``); 0 lets ONNX Runtime choose.
    ort_intra_op_threads: int = 0
    #: ONNX Runtime graph optimization: disable, basic, extended or all (``MODELFN_ORT_GRAPH_OPTIMIZATION``).
    ort_graph_optimization: str = "all"
    #: Logging level of the ``modelfn`` logger (``MODELFN_LOG_LEVEL``).
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``MODELFN_*`` variables; unknown values fail with the variable's name."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            name = _PREFIX + field.name.upper()
            raw = environ.get(name)
            if raw is None or raw == "":
                continue
            kind = type(field.default)
            try:
                values[field.name] = kind(raw)
            except ValueError as exc:
                raise ValueError(f"{name}={raw!r}: expected {kind.__name__}") from exc
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.max_body_bytes <= 0 or self.max_tensor_elements <= 0 or self.load_wait_s <= 0:
            raise ValueError("MODELFN_MAX_BODY_BYTES, MAX_TENSOR_ELEMENTS and LOAD_WAIT_S must be positive")
        if self.ort_graph_optimization not in ("disable", "basic", "extended", "all"):
            raise ValueError(
                "MODELFN_ORT_GRAPH_OPTIMIZATION must be one of disable, basic, extended, all; "
                f"got {self.ort_graph_optimization!r}"
            )
