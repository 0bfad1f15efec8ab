"""The error tree. Each error knows its HTTP status and whose fault it is.

::

    ModelfnError                     500  base; never shown with a traceback
    ├── ClientError                  4xx  the caller's fault: the message is for them
    │   ├── InvalidInput             400  bad tensors, shapes, datatypes, hook rejections
    │   ├── MalformedBody            400  not JSON, or not the protocol's shape
    │   ├── NotFound                 404  unknown route, model or version
    │   ├── MethodNotAllowed         405  known route, wrong verb
    │   ├── PayloadTooLarge          413  body or tensor over the configured limit
    │   └── UnsupportedMediaType     415  a body encoding this server does not decode
    ├── ModelNotReady                503  loading failed or still loading; retried later
    │   ├── StoreUnavailable         503  object store unreachable after bounded retries
    │   ├── RecordUnreadable         503  an alias or traffic policy is malformed, empty or truncated
    │   └── Overloaded               503  every call slot and queue place taken; refused at once
    ├── DeadlineExceeded             504  the request's deadline passed waiting or running
    ├── ContractError                      the contract (modelfn.yaml) or hooks are wrong
    │   └── ArtifactError                  artifact missing, unreadable or not matching its digest
    │       └── ObjectNotFound             no object at a store URI
    ├── RegistryError                409  a registry operation refused (immutable version, bad alias)
    │   └── PreconditionFailed       412  a conditional write lost a race; re-read and retry
    └── ModelFault                   500  the model or a hook raised; detail only in the log

Errors are rendered in exactly one place (:func:`modelfn.http.error_response`)
as ``{"error": "..."}``.
"""

from __future__ import annotations


class ModelfnError(Exception):
    """Base of every error modelfn raises on purpose."""

    status: int = 500
    #: Whether ``str(error)`` may be shown to the caller. Model faults are not.
    public: bool = True
    #: What the caller sees instead when it may not.
    public_message: str = "internal error: the model failed; see the function's log"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class ClientError(ModelfnError):
    """The request is wrong; the message says how."""

    status = 400


class InvalidInput(ClientError):
    """Tensors, shapes or values do not fit the model.

    Pre-processing hooks raise this to reject a payload with a 400.
    """


class MalformedBody(ClientError):
    """The body is not JSON, or not the shape the protocol expects."""


class Unauthorized(ClientError):
    """No valid credentials. The message never says which part was wrong."""

    status = 401


class Forbidden(ClientError):
    """Valid credentials that do not cover this model."""

    status = 403


class NotFound(ClientError):
    status = 404


class MethodNotAllowed(ClientError):
    status = 405

    def __init__(self, method: str, path: str, allowed: list[str]) -> None:
        super().__init__(
            f"method {method} is not allowed on {path}; use {', '.join(allowed)}",
            headers={"Allow": ", ".join(allowed)},
        )


class PayloadTooLarge(ClientError):
    status = 413


class UnsupportedMediaType(ClientError):
    status = 415


class ModelNotReady(ModelfnError):
    """The model could not be loaded (yet). Safe to retry."""

    status = 503

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class StoreUnavailable(ModelNotReady):
    """The object store did not answer after bounded retries."""


class RecordUnreadable(ModelNotReady):
    """A registry record read while serving (an alias and its traffic policy) is malformed, empty or
    truncated: the model it leads to cannot be served until the record is fixed."""


class Overloaded(ModelNotReady):
    """Every call slot and queue place of the model is taken: refused at once, with ``Retry-After``."""


class TooManyGenerations(ModelNotReady):
    """Every generation slot of a generative model is streaming: refused at once (429, ``Retry-After``),
    as OpenAI-compatible servers answer a client over its rate."""

    status = 429


class DeadlineExceeded(ModelfnError):
    """The request's deadline passed while it waited for a slot or while the model ran."""

    status = 504


class ContractError(ModelfnError):
    """The contract or its hooks are invalid. The message names file, field and fix."""

    status = 503


class ArtifactError(ContractError):
    """The artifact is missing, unreadable, or its digest does not match."""


class ObjectNotFound(ArtifactError):
    """No object at the URI."""


class AccessDenied(ArtifactError):
    """The function's cloud identity may not read the object: a deployment problem, not the caller's."""

    public = False  # the caller needs no bucket names or grants; the log has them
    public_message = "the model cannot be loaded: its storage refused access; see the function's log"


class RegistryError(ModelfnError):
    """A registry operation was refused; the message says why and what to do."""

    status = 409


class PreconditionFailed(RegistryError):
    """A conditional write found the object changed (or present) since it was read."""

    status = 412


class ModelFault(ModelfnError):
    """The model or a hook raised. The caller sees a generic message."""

    status = 500
    public = False
