"""One settings object, read once at the entrypoint and passed down.

No other module reads the environment. Every field has its variable next to it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NamedTuple

_PREFIX = "MODELFN_"


class Settings(NamedTuple):
    """Runtime limits and tuning. Each field is read from ``MODELFN_<FIELD>``.

    A NamedTuple rather than a dataclass: it is built on the cold-start path,
    where a frozen dataclass costs ~1 ms to define and a NamedTuple ~0.2 ms.
    """

    #: The model to serve (``MODELFN_MODEL``): empty for the function folder's own contract and
    #: artifact, or a registry reference ``gs://bucket/models/digits@prod``, ``s3://b/models/digits/3``.
    model: str = ""
    #: How often an alias is re-resolved, in seconds (``MODELFN_ALIAS_REFRESH_S``); when it has moved,
    #: the new version loads in the background and replaces the old one atomically.
    alias_refresh_s: float = 30.0
    #: The local disk tier of the artifact cache (``MODELFN_CACHE_DIR``), shared by processes on a host.
    cache_dir: str = "/tmp/modelfn-cache"
    #: Whether models fetched from a store are kept in the cache folder for the next process
    #: (``MODELFN_DISK_TIER``): ``keep``, ``off`` (removed once loaded), or ``auto``: kept unless
    #: the folder is memory (tmpfs; and on Cloud Functions gen2 and Cloud Run, told by ``K_SERVICE``),
    #: where a kept copy would count against the instance's memory as much as the model itself.
    disk_tier: str = "auto"
    #: The instance's memory in MiB (``MODELFN_MEMORY_LIMIT_MB``); 0 reads it from the cgroup, or from
    #: ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE`` on Lambda. A model that cannot fit is refused before loading.
    memory_limit_mb: float = 0.0
    #: For models of at least 64 MiB, blocks of this many KiB or more are mapped and given back to
    #: the system when freed (``MODELFN_MALLOC_MMAP_THRESHOLD_KB``; glibc's ``M_MMAP_THRESHOLD``),
    #: instead of glibc's growing threshold that keeps a load's freed buffers in the heap; 0 leaves
    #: glibc's default. A 768 MiB model's load peaked at 857 MiB with it, 1,146 to 1,194 without.
    malloc_mmap_threshold_kb: int = 1024
    #: The most heaps glibc's allocator spreads modelfn's threads over (``MODELFN_MALLOC_ARENA_MAX``;
    #: glibc's ``M_ARENA_MAX``), set when the function is built, before its threads start. One heap
    #: lets a model loaded on a thread reuse the blocks its parse frees; 0 leaves glibc's default.
    malloc_arena_max: int = 1
    #: Attempts per object-store operation, with exponential backoff (``MODELFN_STORE_ATTEMPTS``).
    store_attempts: int = 3
    #: Budget for the models loaded by a several-model function, in MB of artifacts
    #: (``MODELFN_MEMORY_BUDGET_MB``); 0 means no limit. Least recently used models go first.
    memory_budget_mb: float = 0.0
    #: Largest request body accepted, in bytes (``MODELFN_MAX_BODY_BYTES``). Over it: 413.
    max_body_bytes: int = 4 * 1024 * 1024
    #: The HTTP server (``modelfn serve``, Cloud Run images) reads each request whole before a thread
    #: takes it. Its request line and headers must arrive within ``MODELFN_HEAD_TIMEOUT_S`` seconds
    #: and be at most ``MODELFN_MAX_HEAD_BYTES``; the whole request within ``MODELFN_RECEIVE_TIMEOUT_S``
    #: (past either: 408). Bodies received and not yet answered share ``MODELFN_RECEIVE_BUFFER_MB``
    #: (past it: 503 with ``Retry-After``).
    head_timeout_s: float = 10.0
    max_head_bytes: int = 16 * 1024
    receive_timeout_s: float = 30.0
    receive_buffer_mb: int = 64
    #: Most elements one input tensor may declare (``MODELFN_MAX_TENSOR_ELEMENTS``).
    max_tensor_elements: int = 1 << 22
    #: Deepest JSON nesting accepted in a request body (``MODELFN_MAX_JSON_DEPTH``); checked on the
    #: raw bytes before the body is parsed. Over it: 400.
    max_json_depth: int = 32
    #: Longest JSON string accepted in a request body, in bytes as sent (``MODELFN_MAX_STRING_BYTES``);
    #: checked before the body is parsed. Over it: 413.
    max_string_bytes: int = 64 * 1024
    #: A request's deadline for waiting its turn and running the model, in seconds
    #: (``MODELFN_REQUEST_TIMEOUT_S``; TF Serving's default). Past it: 504; a model call that
    #: goes on keeps its slot until it ends, so a hanging model cannot take more than its slots.
    request_timeout_s: float = 30.0
    #: Model calls run at once per model (``MODELFN_MAX_CONCURRENCY``); 0 means twice the CPUs
    #: this instance may use.
    max_concurrency: int = 0
    #: Requests that may wait for a free call slot per model (``MODELFN_MAX_QUEUE``); beyond them
    #: a request is refused at once with 503 and ``Retry-After`` instead of adding latency for all.
    max_queue: int = 32
    #: After SIGTERM, how long the server finishes requests in flight before it exits, in seconds
    #: (``MODELFN_GRACEFUL_TIMEOUT_S``); Cloud Run sends SIGKILL 10 s after SIGTERM.
    graceful_timeout_s: float = 8.0
    #: What an image's server speaks on its port (``MODELFN_SERVE``): ``http`` (every REST route,
    #: HTTP/1.1) or ``grpc`` (the Open Inference Protocol over gRPC, HTTP/2 cleartext: Cloud Run's
    #: ``h2c`` port). One image serves either; ``modelfn render`` deploys a second service for gRPC.
    serve: str = "http"
    #: With ``MODELFN_SERVE=grpc``, a port for ``GET /metrics`` over HTTP beside the gRPC one
    #: (``MODELFN_METRICS_PORT``; 0: none), with the same credentials as on the HTTP server.
    metrics_port: int = 0
    #: How long a request waits for a model load in progress, in seconds
    #: (``MODELFN_LOAD_WAIT_S``). Past it the request gets 503 with Retry-After.
    load_wait_s: float = 60.0
    #: A model load still running after this many seconds is abandoned and started again by the next
    #: request (``MODELFN_LOAD_TIMEOUT_S``; 0: no bound): a store that stalls mid-read, or a cache entry
    #: that never ends, must not hold the model's loading forever.
    load_timeout_s: float = 600.0
    #: ONNX Runtime intra-op threads (``MODELFN_ORT_INTRA_OP_THREADS``); 0 means one for a model under
    #: 4 MiB, else the CPUs this instance may use: its CPU affinity capped by a cgroup CPU quota, which
    #: ONNX Runtime's own default ignores. Set it for a small model that runs on large inputs.
    ort_intra_op_threads: int = 0
    #: Whether ONNX Runtime's idle pool threads spin-wait (``MODELFN_ORT_SPIN``). Off by default:
    #: on serverless instances spinning burns billed CPU and starves the request threads
    #: (it cost ~20 ms of cold start on 2 vCPUs); turn it on for latency-critical large models.
    ort_spin: bool = False
    #: Whether ONNX Runtime pre-packs constant weights for its kernels (``MODELFN_ORT_PREPACK``).
    #: Off, weights kept in a ``.data`` file (``deploy.weights``) are used in place from its memory
    #: map: a 768 MiB model's session is ready in 0.01 s instead of 0.8 s and the model is in memory
    #: once, even fetched to a memory-backed /tmp; but MatMuls on batches run slower (8 rows: 106
    #: against 38 ms on that model), so it suits large models served a row at a time.
    ort_prepack: bool = True
    #: Threads of numpy's OpenBLAS pool (``MODELFN_BLAS_THREADS``), applied before numpy is
    #: imported unless ``OPENBLAS_NUM_THREADS`` is already set. modelfn never calls BLAS (ONNX
    #: Runtime has its own kernels); a spinning BLAS pool started inside the worker cost ~45 ms
    #: of cold start on 2 vCPUs. Raise it if your hooks do heavy linear algebra.
    blas_threads: int = 1
    #: ONNX Runtime graph optimization: disable, basic, extended or all (``MODELFN_ORT_GRAPH_OPTIMIZATION``).
    ort_graph_optimization: str = "all"
    #: Start loading the model(s) as soon as the serving process starts, before any request
    #: (``MODELFN_PREFETCH``): for platforms that keep warm or minimum instances, where start-up
    #: time is not a user's wait. Readiness (``/v2/health/ready``) turns true when the load is done.
    prefetch: bool = False
    #: Under functions-framework, answer the function's requests at the WSGI layer, before Flask
    #: (``MODELFN_WSGI_FRONT``): the same checks and answers without Flask's ~90 µs a request. 0 sends
    #: every request through Flask; so does ``LOG_EXECUTION_ID``. See :mod:`modelfn.adapters.wsgi`.
    wsgi_front: bool = True
    #: Require an API key on every route but health (``MODELFN_API_KEYS_FILE``): the file of salted
    #: key hashes and the models each may use (see :mod:`modelfn.security.api_keys`); re-read when it changes.
    api_keys_file: str = ""
    #: Also admit Google-signed ID tokens with this audience (``MODELFN_ID_TOKEN_AUDIENCE``, e.g. the
    #: service's URL): Pub/Sub push and service-to-service calls (see :mod:`modelfn.security.id_tokens`).
    id_token_audience: str = ""
    #: The service-account emails whose ID tokens are admitted, comma-separated (``MODELFN_ID_TOKEN_EMAILS``);
    #: required with an audience.
    id_token_emails: str = ""
    #: Where Google's token-signing certificates are fetched (``MODELFN_ID_TOKEN_CERTS_URL``).
    id_token_certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"
    #: The Alexa skill ids whose requests ``/alexa`` answers, comma-separated (``MODELFN_ALEXA_SKILL_IDS``,
    #: ``amzn1.ask.skill.…``); empty turns the route off. Every request's signature is verified too.
    alexa_skill_ids: str = ""
    #: The root certificates Alexa's signing chain must lead to, a PEM file (``MODELFN_ALEXA_TRUST_STORE``);
    #: empty: certifi's bundle where installed, else the system's.
    alexa_trust_store: str = ""
    #: Fetch Alexa's certificate chain from this base URL instead of ``https://s3.amazonaws.com``
    #: (``MODELFN_ALEXA_CERT_MIRROR``): for an egress proxy or a test. The header's URL is still checked
    #: against Amazon's rules, and the chain against the trust store.
    alexa_cert_mirror: str = ""
    #: ``/dialogflow`` credentials: ``user:password`` for basic auth (``MODELFN_DIALOGFLOW_BASIC_AUTH``)
    #: and/or a shared secret (``MODELFN_DIALOGFLOW_SECRET``) sent in a header
    #: (``MODELFN_DIALOGFLOW_SECRET_HEADER``). With neither (nor an ID-token audience) the route is off.
    dialogflow_basic_auth: str = ""
    dialogflow_secret: str = ""
    dialogflow_secret_header: str = "X-Webhook-Secret"
    #: Serve the web page at ``/`` (``MODELFN_PAGE``): people draw, chat or send JSON to the models.
    #: The page itself is static; it calls the API with whatever key the visitor enters.
    page: bool = True
    #: A web bundle (``modelfn build FOLDER --target web``: the folder with ``site.json``) whose
    #: models the page may also run in the visitor's browser (``MODELFN_BROWSER_BUNDLE``); empty: none.
    browser_bundle: str = ""
    #: What ``GET /v1/models/{name}`` answers (``MODELFN_V1_MODEL_STATUS``): ``tfserving``, TF
    #: Serving's body exactly (``model_version_status`` alone, which its clients compare whole), or
    #: ``kserve``, KServe V1's readiness (``name`` and ``ready``, and 503 while loading) beside it, for
    #: KServe's V1 client. The two protocols share the path, so one answer cannot serve both.
    v1_model_status: str = "tfserving"
    #: Logging level of the ``modelfn`` logger (``MODELFN_LOG_LEVEL``).
    log_level: str = "INFO"
    #: ``json`` (one object per line, for Cloud Logging and CloudWatch), ``text``, or ``auto``: JSON
    #: unless stderr is a terminal (``MODELFN_LOG_FORMAT``).
    log_format: str = "auto"
    #: One log line per request, with its route, status, latency, model, version and trace id
    #: (``MODELFN_REQUEST_LOG``).
    request_log: bool = True
    #: The Google Cloud project whose traces request lines link to (``MODELFN_TRACE_PROJECT``).
    trace_project: str = ""
    #: Payload logging, off when empty (``MODELFN_PAYLOAD_LOG``): where sampled requests and their answers
    #: go as CloudEvents JSON records, a file (or a publish) per batch per instance: ``gs://bucket/prefix``,
    #: ``s3://bucket/prefix``, a folder (``file:///path``) or a Pub/Sub topic
    #: (``pubsub://projects/<project>/topics/<topic>``). See :mod:`modelfn.monitoring.payload`.
    payload_log: str = ""
    #: The share of answered model requests recorded, in [0, 1] (``MODELFN_PAYLOAD_SAMPLE``).
    payload_sample: float = 1.0
    #: Records a batch holds at most (``MODELFN_PAYLOAD_BATCH``); a batch is written when full, or
    #: ``MODELFN_PAYLOAD_FLUSH_S`` seconds after its first record, and at shutdown.
    payload_batch: int = 500
    payload_flush_s: float = 10.0
    #: Records waiting to be written, at most (``MODELFN_PAYLOAD_QUEUE``); past it a record is dropped
    #: and counted, never waited for: a slow sink cannot slow a request.
    payload_queue: int = 5000
    #: The key of the hashes of ``monitoring.payload.hash`` fields (``MODELFN_PAYLOAD_HASH_KEY``, HMAC-SHA256);
    #: without one they are plain SHA-256, which a guess of a short value (an email) can be checked against.
    payload_hash_key: str = ""
    #: Where each instance's drift summaries go (``MODELFN_MONITOR_STORE``: ``gs://``, ``s3://`` or a folder),
    #: for models whose contract has ``monitoring.reference``; empty: no summaries. Flushed every
    #: ``MODELFN_MONITOR_FLUSH_S`` seconds and at shutdown. ``modelfn monitor report`` merges them.
    monitor_store: str = ""
    monitor_flush_s: float = 60.0
    #: Storage events: only objects under this prefix start a batch prediction
    #: (``MODELFN_BATCH_INPUT_PREFIX``, e.g. ``incoming/``); the others are acknowledged and ignored.
    batch_input_prefix: str = "incoming/"
    #: Where batch results go (``MODELFN_BATCH_OUTPUT``): ``gs://bucket/prefix``, ``s3://...`` or a
    #: folder. Empty: ``predictions/`` in the input's own bucket.
    batch_output: str = ""
    #: Also upsert one row per prediction into this database (``MODELFN_BATCH_DATABASE``,
    #: ``sqlite:///path/results.db``); empty for none.
    batch_database: str = ""
    #: Rows per inference call in a batch prediction (``MODELFN_BATCH_CHUNK_ROWS``).
    batch_chunk_rows: int = 1024
    #: Where the results of message-triggered predictions go (``MODELFN_MESSAGE_OUTPUT``):
    #: ``gs://bucket/prefix``, ``s3://...`` or a folder; one ``<message id>.json`` each.
    message_output: str = ""
    #: Also publish each message's answer to this Pub/Sub topic (``MODELFN_RESULT_TOPIC``,
    #: ``projects/<project>/topics/<topic>``), with the request's message id as ``request_id``.
    result_topic: str = ""
    #: Or send it to this SQS queue (``MODELFN_RESULT_QUEUE``, the queue URL).
    result_queue: str = ""
    #: The model batch predictions run in a several-model function (``MODELFN_BATCH_MODEL``,
    #: e.g. its pipeline); a one-model function runs its own.
    batch_model: str = ""
    #: Where a storage event's large file is predicted instead of in the function
    #: (``MODELFN_BATCH_HANDOFF``): empty (never), ``dataflow`` (a Dataflow job from the flex
    #: template, see ``dataflow_*``) or ``local`` (a Beam pipeline in a child process of this host:
    #: for development and single hosts, since Cloud Functions and Lambda throttle an instance's
    #: CPU once it has answered). See :mod:`modelfn.protocols.handoff`.
    batch_handoff: str = ""
    #: Files of this many bytes or more are handed off (``MODELFN_BATCH_HANDOFF_BYTES``).
    batch_handoff_bytes: int = 1 << 30
    #: The flex template spec the job starts from (``MODELFN_DATAFLOW_TEMPLATE``, ``gs://.../x.json``).
    dataflow_template: str = ""
    #: The project and region the job runs in (``MODELFN_DATAFLOW_PROJECT``, ``MODELFN_DATAFLOW_REGION``).
    dataflow_project: str = ""
    dataflow_region: str = ""
    #: The job's runtime environment as JSON (``MODELFN_DATAFLOW_ENVIRONMENT``): Dataflow's
    #: ``FlexTemplateRuntimeEnvironment``, e.g. ``{"serviceAccountEmail": ..., "maxWorkers": 10}``.
    dataflow_environment: str = "{}"
    #: Dataflow's API (``MODELFN_DATAFLOW_ENDPOINT``); another address is called without credentials.
    dataflow_endpoint: str = "https://dataflow.googleapis.com"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``MODELFN_*`` variables; unknown values fail with the variable's name."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field, default in cls._field_defaults.items():
            name = _PREFIX + field.upper()
            raw = environ.get(name)
            if raw is None or raw == "":
                continue
            kind = type(default)
            try:
                values[field] = _parse_bool(raw) if kind is bool else kind(raw)
            except ValueError as exc:
                raise ValueError(f"{name}={raw!r}: expected {kind.__name__}") from exc
        # Platform facts, read here so that no other module reads the environment.
        if "disk_tier" not in values and environ.get("K_SERVICE"):  # Cloud Run and Cloud Functions gen2
            values["disk_tier"] = "off"
        if "prefetch" not in values and environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start":
            values["prefetch"] = True  # this init becomes the snapshot every cold start resumes: load now
        lambda_memory = environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
        if "memory_limit_mb" not in values and lambda_memory.isdigit():
            values["memory_limit_mb"] = float(lambda_memory)
        settings = cls(**values)  # type: ignore[arg-type]  # each value parsed to its field's type above
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.max_body_bytes <= 0 or self.max_tensor_elements <= 0 or self.load_wait_s <= 0:
            raise ValueError("MODELFN_MAX_BODY_BYTES, MAX_TENSOR_ELEMENTS and LOAD_WAIT_S must be positive")
        if min(self.max_json_depth, self.max_string_bytes, self.request_timeout_s, self.graceful_timeout_s) <= 0:
            raise ValueError(
                "MODELFN_MAX_JSON_DEPTH, MAX_STRING_BYTES, REQUEST_TIMEOUT_S and GRACEFUL_TIMEOUT_S must be positive"
            )
        if min(self.head_timeout_s, self.max_head_bytes, self.receive_timeout_s, self.receive_buffer_mb) <= 0:
            raise ValueError(
                "MODELFN_HEAD_TIMEOUT_S, MAX_HEAD_BYTES, RECEIVE_TIMEOUT_S and RECEIVE_BUFFER_MB must be positive"
            )
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError("MODELFN_METRICS_PORT must be a port number, or 0 for none")
        if self.serve not in ("http", "grpc"):
            raise ValueError(f"MODELFN_SERVE must be http or grpc, got {self.serve[:20]!r}")
        if self.load_timeout_s < 0:
            raise ValueError("MODELFN_LOAD_TIMEOUT_S must not be negative")
        if self.max_concurrency < 0 or self.max_queue < 0:
            raise ValueError("MODELFN_MAX_CONCURRENCY and MODELFN_MAX_QUEUE must not be negative")
        if self.alias_refresh_s <= 0 or self.store_attempts <= 0:
            raise ValueError("MODELFN_ALIAS_REFRESH_S and MODELFN_STORE_ATTEMPTS must be positive")
        if bool(self.id_token_audience) != bool(self.id_token_emails.strip()):
            raise ValueError(
                "MODELFN_ID_TOKEN_AUDIENCE and MODELFN_ID_TOKEN_EMAILS go together: a Google-signed token for "
                "the audience alone could come from any Google account"
            )
        if self.dialogflow_basic_auth and ":" not in self.dialogflow_basic_auth:
            raise ValueError("MODELFN_DIALOGFLOW_BASIC_AUTH must be user:password")
        if self.blas_threads <= 0:
            raise ValueError("MODELFN_BLAS_THREADS must be positive")
        if not 1 <= self.batch_chunk_rows <= 65536:
            raise ValueError("MODELFN_BATCH_CHUNK_ROWS must be between 1 and 65536")
        if self.disk_tier not in ("auto", "keep", "off"):
            raise ValueError(f"MODELFN_DISK_TIER must be auto, keep or off; got {self.disk_tier!r}")
        if self.malloc_mmap_threshold_kb < 0:
            raise ValueError("MODELFN_MALLOC_MMAP_THRESHOLD_KB must not be negative")
        if self.malloc_arena_max < 0:
            raise ValueError("MODELFN_MALLOC_ARENA_MAX must not be negative")
        if self.memory_limit_mb < 0:
            raise ValueError("MODELFN_MEMORY_LIMIT_MB must not be negative")
        if self.batch_handoff not in ("", "local", "dataflow"):
            raise ValueError(f"MODELFN_BATCH_HANDOFF must be empty, local or dataflow; got {self.batch_handoff!r}")
        if self.batch_handoff_bytes <= 0:
            raise ValueError("MODELFN_BATCH_HANDOFF_BYTES must be positive")
        if self.batch_handoff == "dataflow" and not (
            self.dataflow_template and self.dataflow_project and self.dataflow_region
        ):
            raise ValueError(
                "MODELFN_BATCH_HANDOFF=dataflow needs MODELFN_DATAFLOW_TEMPLATE, MODELFN_DATAFLOW_PROJECT "
                "and MODELFN_DATAFLOW_REGION"
            )
        if not 0.0 <= self.payload_sample <= 1.0:
            raise ValueError("MODELFN_PAYLOAD_SAMPLE must be between 0 and 1")
        if not 1 <= self.payload_batch <= 10000 or self.payload_queue < 1:
            raise ValueError("MODELFN_PAYLOAD_BATCH must be between 1 and 10000, and MODELFN_PAYLOAD_QUEUE positive")
        if self.payload_flush_s <= 0 or self.monitor_flush_s <= 0:
            raise ValueError("MODELFN_PAYLOAD_FLUSH_S and MODELFN_MONITOR_FLUSH_S must be positive")
        if self.v1_model_status not in ("tfserving", "kserve"):
            raise ValueError(f"MODELFN_V1_MODEL_STATUS must be tfserving or kserve; got {self.v1_model_status[:20]!r}")
        if self.log_format not in ("auto", "json", "text"):
            raise ValueError(f"MODELFN_LOG_FORMAT must be auto, json or text; got {self.log_format!r}")
        if self.ort_graph_optimization not in ("disable", "basic", "extended", "all"):
            raise ValueError(
                "MODELFN_ORT_GRAPH_OPTIMIZATION must be one of disable, basic, extended, all; "
                f"got {self.ort_graph_optimization!r}"
            )


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)
