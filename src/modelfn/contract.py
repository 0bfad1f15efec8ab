"""The model contract: ``functions/<name>/modelfn.yaml``.

A contract is pure data: what the artifact is and where, how to call it, how it
was made. It is validated once (by ``modelfn check`` and again at cold start)
and every problem names the file, the field and what was expected.

msgspec does the typed validation: it gives the same strictness as a pydantic
model at a fraction of the import cost, which matters because the contract is
read on the cold-start path of every function (see README, "Why these libraries").
"""

# No ``from __future__ import annotations`` here: msgspec would then compile and evaluate every field's
# annotation string when it first decodes a contract, about 2 ms of each cold start, where evaluated
# annotations cost a fraction of that once, at import.

import hashlib
import hmac
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import msgspec.json

from modelfn._files import write_atomically
from modelfn.datatypes import Datatype
from modelfn.errors import ContractError

CONTRACT_FILE = "modelfn.yaml"
#: The compiled contract, written by ``modelfn check``/``serve``: the validated
#: contract as JSON plus the sha256 of the YAML it came from. Reading it skips
#: importing and running a YAML parser on the cold path (~20 ms); it is used
#: only while that digest still matches, like a ``.pyc`` file.
COMPILED_FILE = ".modelfn/contract.json"

# Model names travel in URLs and become cloud resource names later: keep them tame.
ModelName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]
Version = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
TensorName = Annotated[str, msgspec.Meta(pattern=r"^\S{1,256}$")]
Dim = Annotated[int, msgspec.Meta(ge=-1)]
Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
#: A file of a model version, relative to its folder: no absolute path, no ``..``, no hidden names.
RelativeFile = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*){0,7}$", max_length=255)
]
HookRef = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_./-]*\.py:[A-Za-z_][A-Za-z0-9_]*$")]
#: An ES module in the function folder: the browser's twin of the Python hooks.
JavaScriptFile = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_-]*\.m?js$", max_length=128)]

#: ``genai``: a generative language model that ONNX Runtime GenAI runs (its model builder's folder).
Framework = Literal["onnx", "tensorflow", "sklearn", "pytorch", "pipeline", "genai"]

#: OIP ``platform`` string reported in model metadata, per framework
#: (``ensemble`` is what Triton reports for the same idea, so clients recognise it).
PLATFORMS: dict[str, str] = {
    "onnx": "onnx_onnxv1",
    "tensorflow": "tensorflow_savedmodel",
    "sklearn": "sklearn",
    "pytorch": "pytorch_libtorch",
    "pipeline": "ensemble",
    "genai": "onnxruntime_genai",
}


class _Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Unknown keys are typos until proven otherwise."""


class TensorSpec(_Strict, frozen=True):
    """One named input or output tensor. ``-1`` marks a variable dimension."""

    name: TensorName
    datatype: Datatype
    shape: Annotated[list[Dim], msgspec.Meta(max_length=16)]
    description: str = ""

    def metadata(self) -> dict[str, Any]:
        """The OIP ``$metadata_tensor`` form."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


#: Serialization formats by file extension. Pickle and joblib run code when loaded. A SavedModel
#: is a folder, so it travels as one archive whose digest is pinned like any artifact. PyTorch:
#: ``.pt2`` is ``torch.export.save``'s program, ``.pt`` a TorchScript archive (``torch.jit.save``).
FORMATS = {".onnx": "onnx", ".keras": "keras", ".skops": "skops", ".pkl": "pickle", ".pickle": "pickle",
           ".joblib": "joblib", ".zip": "savedmodel", ".tgz": "savedmodel", ".tar.gz": "savedmodel",
           ".pt2": "torch_export", ".pt": "torchscript"}  # fmt: skip
PICKLE_FORMATS = frozenset({"pickle", "joblib"})


class Artifact(_Strict, frozen=True):
    """Where the model bytes are and what they must hash to."""

    #: A path relative to the function folder, or a ``file://`` URI.
    uri: Annotated[str, msgspec.Meta(min_length=1)]
    #: Required: modelfn never deserializes bytes it has not verified.
    sha256: Sha256 | None = None
    #: For skops artifacts: the extra types you trust to be loaded (``skops.io.get_untrusted_types``).
    trusted_types: list[str] = []
    #: Files the model reads beside its own (ONNX external data, for models over protobuf's 2 GB):
    #: path relative to the model file's folder -> sha256. Each is verified before the model loads,
    #: pushed and pulled with the version, and the only external location the model may name
    #: (``modelfn digests FOLDER`` prints the block).
    files: Annotated[dict[RelativeFile, Sha256], msgspec.Meta(max_length=1000)] = {}

    @property
    def file_name(self) -> str:
        return self.uri.rsplit("/", 1)[-1]

    @property
    def digest(self) -> str:
        """The pinned sha256, which validation requires (``sha256`` is optional only to say why it is missing)."""
        if self.sha256 is None:
            raise ContractError("artifact.sha256 is required: modelfn never loads bytes it has not verified")
        return self.sha256

    @property
    def bundled(self) -> bool:
        """Whether the file sits in the function folder (a relative path), so it travels with the bundle."""
        return "://" not in self.uri

    @property
    def format(self) -> str | None:
        name = self.uri.rsplit("/", 1)[-1].lower()
        return next((fmt for suffix, fmt in FORMATS.items() if name.endswith(suffix)), None)

    def __post_init__(self) -> None:
        if self.file_name in self.files:
            raise ValueError(f"artifact.files lists the model file {self.file_name!r} itself; list only the others")
        if self.sha256 is not None:
            return
        if self.format in PICKLE_FORMATS:
            raise ValueError(
                f"{self.format} artifacts run code when they are loaded, so modelfn loads them only when "
                "artifact.sha256 pins the exact bytes you built; add it (sha256sum), or save the model "
                "with skops (.skops), which loads without running code"
            )
        raise ValueError("artifact.sha256 is required: modelfn never loads bytes it has not verified")


class Hooks(_Strict, frozen=True):
    """Optional pre/post-processing, each ``file.py:function`` inside the function folder."""

    pre: HookRef | None = None
    post: HookRef | None = None
    #: ``turn(turn) -> payload``: a conversation turn from ``/alexa`` or ``/dialogflow`` (its
    #: ``platform``, ``intent``, ``slots``, ``text``, ``locale``) as the payload ``pre`` takes.
    #: Without it the payload is ``{conversation.input: the words heard}``.
    turn: HookRef | None = None
    #: The same ``pre`` and ``post`` in JavaScript (an ES module exporting functions of the same
    #: names), for the browser (``modelfn build --target web``); ``modelfn check`` runs both on the
    #: example and on ``validation_requests`` under Node and fails when they disagree.
    javascript: JavaScriptFile | None = None
    #: Files the hooks read besides their modules (a vocabulary, the answers' texts), copied with
    #: them into every bundle; the JavaScript hooks may import JSON ones.
    data: Annotated[list[RelativeFile], msgspec.Meta(max_length=64)] = []

    def __post_init__(self) -> None:
        if self.javascript is not None and self.pre is None and self.post is None:
            raise ValueError("hooks.javascript is the twin of `pre` and `post`; name at least one of them")


Speech = Annotated[str, msgspec.Meta(max_length=2000)]
FieldName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]


class Conversation(_Strict, frozen=True):
    """What the model says on voice and chat platforms (``/alexa``, ``/dialogflow``)."""

    #: Said when a user opens the skill (Alexa ``LaunchRequest``).
    welcome: Speech = "Hello. Ask me a question."
    #: Said for Alexa's help intent; empty: the welcome.
    help: Speech = ""
    #: Said when the user stops or cancels.
    goodbye: Speech = "Goodbye."
    #: Said when the question cannot be answered (invalid input for the model).
    fallback: Speech = "Sorry, I could not answer that."
    #: Said again when the user is silent; empty: the session ends after each answer.
    reprompt: Speech = ""
    #: The payload field that carries the words heard, when there is no ``hooks.turn``.
    input: FieldName = "text"
    #: The answer field that is said back (a string answer is said as it is).
    reply: FieldName = "answer"


class Page(_Strict, frozen=True):
    """How the function's web page (``GET /``) shows this model to people."""

    #: ``form``: the contract's example in an editable box; ``sketch``: draw on a canvas, sent as
    #: ``{input: size x size rows of 0..scale}``; ``chat``: each message sent as ``{input: text}``,
    #: the answer's ``reply`` field shown.
    widget: Literal["form", "sketch", "chat"] = "form"
    input: FieldName = "text"
    #: ``sketch``: the grid the drawing is reduced to, and the value of a full cell.
    size: Annotated[int, msgspec.Meta(ge=4, le=64)] = 8
    scale: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    #: ``sketch``: the answer fields with the class and the per-class scores.
    label: FieldName = "label"
    scores: FieldName = "probabilities"
    #: ``chat``: the answer field shown as the reply.
    reply: FieldName = "answer"


class Generation(_Strict, frozen=True):
    """A generative model's limits and defaults (``framework: genai``).

    Every limit is the operator's: a client may ask for less, never for more. A prompt longer than
    ``max_prompt_tokens`` is refused (400) before any work; a request for more than ``max_tokens``
    new tokens is cut to ``max_tokens``.
    """

    #: Longest prompt, in tokens, after the chat template is applied.
    max_prompt_tokens: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 512
    #: Most new tokens one generation may write; also the default when a request names none.
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 256
    #: The default sampling. ``temperature: 0`` is greedy search (the same answer every time).
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] = 0.0
    top_p: Annotated[float, msgspec.Meta(gt=0, le=1)] = 1.0
    top_k: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50
    #: Generations running at once in one instance; beyond them a request is refused (429, ``Retry-After``).
    max_concurrent: Annotated[int, msgspec.Meta(ge=1, le=256)] = 4
    #: The chat template (Jinja, as Hugging Face tokenizers carry it), a file pinned in
    #: ``artifact.files``: chat messages become the prompt through it.
    chat_template: RelativeFile | None = None
    #: Text that ends an answer where it appears (it is not sent), besides the model's end token.
    stop: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]], msgspec.Meta(max_length=8)] = []


class Embedding(_Strict, frozen=True):
    """A text encoder (``embedding:``): the function tokenizes text and pools the model's output into one vector.

    ``POST /predict`` then takes ``{"text": ...}`` (or ``{"texts": [...]}``) with no hook, and
    ``POST /openai/v1/embeddings`` answers OpenAI's embeddings requests.
    """

    #: A Hugging Face ``tokenizer.json``, pinned in ``artifact.files`` beside the model.
    tokenizer: RelativeFile
    #: Tokens a text may have (special tokens included); texts are padded to this length. Longer: a 400.
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=8192)] = 128
    #: ``mean`` over the attention mask, the first token's vector (``cls``), or ``none`` (the model pools).
    pooling: Literal["mean", "cls", "none"] = "mean"
    #: Scale each vector to unit length (cosine similarity is then a dot product).
    normalize: bool = True
    #: The output to pool; default the first.
    output: TensorName | None = None
    #: The payload field ``POST /predict`` reads (and its plural, for several texts).
    input: FieldName = "text"


class PayloadFields(_Strict, frozen=True):
    """Fields of a request or an answer that payload records must not carry as sent (personal data).

    A name matches a key of a JSON object at any depth, and an Open Inference Protocol tensor by its
    ``name`` (its ``data`` is then what is left out or hashed).
    """

    #: Left out of the record.
    omit: Annotated[list[FieldName], msgspec.Meta(max_length=64)] = []
    #: Replaced by ``sha256:<hex>`` of the value (keyed with ``MODELFN_PAYLOAD_HASH_KEY`` where set):
    #: records can still be joined on it, and it does not say the value.
    hash: Annotated[list[FieldName], msgspec.Meta(max_length=64)] = []


class Monitoring(_Strict, frozen=True):
    """What the model is asked and answers, watched (``MODELFN_PAYLOAD_LOG``, ``MODELFN_MONITOR_STORE``)."""

    #: The reference distribution drift is measured against: a JSON file ``modelfn monitor reference``
    #: writes from the validation set (``validation_requests``, ``validation`` or a file of rows).
    reference: RelativeFile | None = None
    #: A hook ``features(inputs) -> {name: one value per row}`` whose features drift is measured on instead
    #: of the inputs' own (numbers, or strings as categories): an image's brightness, a text's language.
    #: The outputs' features are kept.
    features: HookRef | None = None
    #: Fields payload records leave out or hash.
    payload: PayloadFields = PayloadFields()


class Docs(_Strict, frozen=True):
    """The model card: what users of the endpoint need to know."""

    description: str
    metrics: dict[str, float | int | str] = {}
    training_data: str = ""
    hyperparameters: dict[str, Any] = {}
    limitations: list[str] = []


#: A media type (``image/png``) or a whole family (``image/*``), lower case.
MediaType = Annotated[str, msgspec.Meta(pattern=r"^[a-z]+/([a-z0-9][a-z0-9.+-]{0,63}|\*)$")]


class Uploads(_Strict, frozen=True):
    """Files ``POST /predict`` takes beside JSON: ``multipart/form-data`` parts or a raw body.

    The pre hook receives each file as a :class:`modelfn.Upload` (its bytes, media type and file
    name) under its form field's name; a raw body arrives under ``field``. A request of any other
    type is a 415, a body over what its files may hold a 413, both refused before any part is
    parsed; a part over ``max_bytes`` is a 413 as soon as it is.
    """

    #: What is accepted, as the client declares it and as the bytes' signature says for images.
    media_types: Annotated[list[MediaType], msgspec.Meta(min_length=1, max_length=32)]
    #: Largest file, in bytes (the request's body limit, ``MODELFN_MAX_BODY_BYTES``, still applies).
    max_bytes: Annotated[int, msgspec.Meta(ge=1, le=64 << 20)] = 4 << 20
    #: Most files in one request.
    max_files: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    #: Largest image, in pixels (width x height), read from its header before it is decoded:
    #: the guard against decompression bombs (see :func:`modelfn.payload.image`).
    max_pixels: Annotated[int, msgspec.Meta(ge=1, le=200_000_000)] = 4_000_000
    #: The payload key a raw body (not multipart) arrives under.
    field: FieldName = "file"

    def accepts(self, media_type: str) -> bool:
        family = media_type.split("/", 1)[0] + "/*"
        return media_type in self.media_types or family in self.media_types


class Batching(_Strict, frozen=True):
    """Micro-batching: concurrent requests for this model run as one inference call.

    Requests are concatenated along the first dimension, so every input and output
    must have a variable first dimension (``-1``). A request alone is never delayed.
    """

    #: Most rows in one inference call; a request this large or larger runs alone.
    max_batch_size: Annotated[int, msgspec.Meta(ge=2, le=65536)] = 32
    #: How long a batch that already has company may wait for more requests, in ms (0: never wait).
    max_wait_ms: Annotated[float, msgspec.Meta(ge=0, le=1000)] = 0.0
    #: How many batches may run at once. 1 suits models whose every call is expensive (Keras);
    #: a small, fast model keeps its CPUs busy with one batch per vCPU.
    max_concurrent_batches: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1


class Dataflow(_Strict, frozen=True):
    """Batch jobs beyond one function (``deploy.dataflow``): large files go to Dataflow.

    The storage-triggered function hands a file of ``above_mb`` or more to a Dataflow job started
    from the function's flex template (``modelfn build --target dataflow``): the same contract,
    hooks and checks on Beam's ``RunInference``, writing the same results. Smaller files are
    predicted in the function. Google Cloud only.
    """

    #: Files this large or larger go to Dataflow (MiB).
    above_mb: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 1024
    #: Most workers one job may scale to (Dataflow's autoscaling ceiling: the cost bound).
    max_workers: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    #: Each worker's machine type.
    machine_type: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9]+(-[a-z0-9]+)+$")] = "n2-standard-4"


class Deploy(_Strict, frozen=True):
    """How the function serving this model is sized and packaged in the cloud (``modelfn render``).

    Read by the tooling, except ``verify``, which a cold start reads. A several-model function
    takes the block of the one member that declares it.
    """

    #: When the bundled artifact is verified. ``start`` (the default): every cold start hashes it; for
    #: an ONNX model the hash runs beside ONNX Runtime's parse of the same open file, and the model
    #: answers nothing (not even its warm-up) until both are done and the digest matches.
    #: ``before-parse``: the hash finishes before the framework reads a byte (slower by the hash's
    #: time; for those who will not let a parser see unverified bytes). Pickle-based formats are
    #: always hashed first, whatever this says. ``build``: ``modelfn build`` hashes it once and
    #: records the digests in the bundle; a cold start then checks each file's size against that
    #: record and skips the re-hash, which trusts the bundle to be immutable, as a deployed zip or a
    #: content-addressed image is. Files fetched from a store are always hashed while they stream.
    verify: Literal["start", "before-parse", "build"] = "start"
    #: How ``modelfn build`` and ``modelfn push`` carry a local ONNX artifact. ``auto``: a model file
    #: of 16 MiB or more that embeds its weights goes as its graph plus one ``<file>.data`` holding
    #: every tensor of 1 KiB or more, 64 KiB-aligned, which ONNX Runtime maps and pre-packs in one
    #: pass instead of parsing out of protobuf (768 MiB: 0.8 s and 836 MiB at the peak, against 1.9 s
    #: and 1,205 MiB); the bundled or pushed contract pins both files. ``external`` does it at any
    #: size; ``embedded`` carries the file as it is. Lossless: the same tensors, byte for byte.
    weights: Literal["auto", "external", "embedded"] = "auto"

    #: Memory of each instance, in MiB (Lambda: 128..10240; Cloud Run: up to 32 GiB).
    memory_mb: Annotated[int, msgspec.Meta(ge=128, le=10240)] = 1024
    #: vCPUs of each instance on Google Cloud (Lambda gives CPU in proportion to memory).
    cpu: Annotated[float, msgspec.Meta(ge=0.08, le=8)] = 1
    #: Longest request, in seconds; kept under API Gateway's 29 s integration limit.
    timeout_s: Annotated[int, msgspec.Meta(ge=1, le=29)] = 28
    #: Instances kept warm (billed while idle; 0 scales to zero).
    min_instances: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0
    #: Most instances: the ceiling on cost and on load sent to the registry bucket.
    max_instances: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    #: Requests one instance serves at once on Google Cloud (Lambda always serves one).
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 8
    #: ``zip`` (source bundle) or ``image`` (container). ``auto`` picks ``image`` for TensorFlow and
    #: PyTorch, whose wheels are over both platforms' zip limits (see ``modelfn build``).
    package: Literal["auto", "zip", "image"] = "auto"
    #: The registry alias a one-model function serves (``MODELFN_MODEL=<registry>/<name>@<alias>``).
    alias: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{0,62}$")] = "prod"
    #: Whether the models' routes are on the shared API gateway (with API keys). ``false`` leaves
    #: the function reachable only at its own URL, with IAM authentication: for a second build of
    #: a model the gateway already routes, or an internal one.
    expose: bool = True
    #: The longest cold start ``modelfn build`` accepts, in ms: it starts the bundle it built on the
    #: build machine, times spawn to the first answered example, prints the phases, and fails the
    #: build when this is exceeded (a regression gate; the build machine is not the platform).
    cold_start_budget_ms: Annotated[int, msgspec.Meta(ge=1, le=600_000)] | None = None
    #: A generative model's longest time to first token that ``modelfn build`` accepts, in ms: the
    #: started bundle streams a completion, warm, five times; the median must be within it. HTTP targets.
    ttft_budget_ms: Annotated[int, msgspec.Meta(ge=1, le=600_000)] | None = None
    #: Lambda SnapStart for a zip function: Lambda runs the init (the model's load and warm-up)
    #: once per published version, snapshots it, and starts cold instances from the snapshot.
    #: ``modelfn render`` publishes each deploy and points the alias at it; the function's hooks
    #: renew randomness, store clients and the alias after each restore. AWS only; zip only.
    snap_start: bool = False
    #: Also publish the models as a static site that runs them in the visitor's browser
    #: (``modelfn build --target web``): ``modelfn render`` adds a Cloud Storage website bucket on
    #: Google Cloud and an S3 bucket behind CloudFront on AWS (``infra/modules/*-site``).
    site: bool = False
    #: Event triggers, each deployed as a function of its own beside the HTTP one (entry point
    #: ``handle_event``): ``storage`` runs a batch prediction of each file that lands under
    #: ``incoming/`` in the uploads bucket; ``messages`` answers each request on a Pub/Sub topic
    #: (Google Cloud) or an SQS queue (AWS). Results go to the results bucket.
    triggers: Annotated[list[Literal["storage", "messages"]], msgspec.Meta(max_length=2)] = []
    #: Hand files of ``dataflow.above_mb`` or more that land for the ``storage`` trigger to a
    #: Dataflow job instead (see :class:`Dataflow`).
    dataflow: Dataflow | None = None
    #: Also serve the Open Inference Protocol over gRPC (Google Cloud and Kubernetes): ``modelfn
    #: render`` deploys a Cloud Run service ``<function>-grpc`` beside the REST one, from the
    #: function's Cloud Run image with ``MODELFN_SERVE=grpc`` and an ``h2c`` port, invoked with IAM
    #: (``var.invokers``; the API gateway routes REST only), and a gRPC Knative Service. Lambda has
    #: no gRPC: the AWS files leave it out.
    grpc: bool = False
    #: Alexa skills allowed to call the HTTP function (``amzn1.ask.skill.<uuid>``): set as
    #: ``MODELFN_ALEXA_SKILL_IDS``, and wired in: Lambda lets each skill invoke the function directly
    #: (a permission with the skill id as event source token, ``alexaSkill`` in serverless.yml);
    #: Google's gateway gets ``POST /models/<name>/alexa`` without an API key, since Amazon signs
    #: every request and the function verifies it.
    alexa_skills: Annotated[
        list[Annotated[str, msgspec.Meta(pattern=r"^amzn1\.ask\.skill\.[0-9a-f-]{36}$")]], msgspec.Meta(max_length=20)
    ] = []
    #: A split made by the platform instead of the function (``modelfn traffic`` splits inside it):
    #: model version -> percent, e.g. ``{"3": 90, "4": 10}``. Each version runs pinned in its own
    #: Cloud Run revision or Lambda version, tagged ``m<version>``, and the platform shares the
    #: requests. This deploy pins the contract's own version; the other one must already be
    #: deployed. Two versions at most (Lambda's alias routing takes two); the weights add up to 100.
    traffic: Annotated[dict[Version, Annotated[int, msgspec.Meta(ge=0, le=100)]], msgspec.Meta(max_length=2)] | None = (
        None
    )

    def __post_init__(self) -> None:
        if self.dataflow is not None and "storage" not in self.triggers:
            raise ValueError(
                "deploy.dataflow hands large files of the storage trigger to Dataflow: add `storage` to triggers"
            )
        if self.snap_start and self.package == "image":
            raise ValueError("deploy.snap_start works with zip packages only (Lambda has no SnapStart for images)")
        if self.traffic is None:
            return
        if not self.traffic:
            raise ValueError('deploy.traffic needs one or two versions, e.g. {"3": 90, "4": 10}')
        if sum(self.traffic.values()) != 100:
            raise ValueError(f"deploy.traffic's weights add up to {sum(self.traffic.values())}, not 100")


class Step(_Strict, frozen=True):
    """One model run by a pipeline, wired by tensor names (as in a Triton ensemble).

    The pipeline's inputs and every step's mapped outputs share one namespace of
    tensor names; a step reads from it and adds to it, so a later step can take an
    earlier one's output (a chain) and several steps can read the same input (a fan-out).
    """

    #: A model served by the same function (a sibling folder); it may not be a pipeline.
    model: ModelName
    #: The model's input name -> the tensor it reads: a pipeline input or an earlier step's output.
    inputs: Annotated[dict[TensorName, TensorName], msgspec.Meta(min_length=1)]
    #: The model's output name -> the tensor name it is published under.
    outputs: Annotated[dict[TensorName, TensorName], msgspec.Meta(min_length=1)]


#: The datatypes a column of a table may have: numbers, booleans and strings.
COLUMN_DATATYPES = ("BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
                    "FP16", "FP32", "FP64", "BYTES")  # fmt: skip


class Table(_Strict, frozen=True):
    """A tabular model: each of the contract's inputs is one named column, one value per row.

    Every route then takes a row as a person writes it (``{"tenure": 12, "plan": "pro"}``), the Open
    Inference Protocol one input per column (MLServer's pandas codec layout: shape ``[rows, 1]`` or
    ``[rows]``), and the batch jobs map columns by header. ``as`` says how the model takes them: a
    pandas ``DataFrame`` with the columns in the contract's order (a scikit-learn pipeline trained on
    one), or ``arrays``: one array per column, as an ONNX model converted from such a pipeline takes them.
    """

    #: How the model takes the columns: ``dataframe`` (scikit-learn) or ``arrays`` (one per column).
    pass_as: Literal["dataframe", "arrays"] = msgspec.field(default="dataframe", name="as")
    #: Columns whose value may be missing (``null`` or absent in a row): NaN for numbers, and for strings
    #: (``as: dataframe`` only) NaN in the DataFrame, as pandas reads an empty cell.
    nullable: list[TensorName] = []
    #: The values a column may take (an encoder's categories); any other is a 400 naming the column.
    #: ``modelfn convert`` writes them from the pipeline's encoders, whose ONNX form cannot say which value
    #: it refused.
    categories: dict[TensorName, Annotated[list[str | int | float], msgspec.Meta(max_length=100_000)]] = {}


class Contract(_Strict, frozen=True, kw_only=True):
    """The whole ``modelfn.yaml``."""

    name: ModelName
    version: Version
    framework: Framework
    #: Every framework but ``pipeline`` has one; a pipeline has ``steps`` instead.
    artifact: Artifact | None = None
    inputs: Annotated[list[TensorSpec], msgspec.Meta(min_length=1)]
    outputs: Annotated[list[TensorSpec], msgspec.Meta(min_length=1)]
    docs: Docs
    hooks: Hooks = Hooks()
    #: A request body for the plain JSON route; ``modelfn check`` runs it.
    example: dict[str, Any] | None = None
    #: A ``.npz`` file in the folder with validation inputs (by input name) and optional ``labels``;
    #: ``modelfn convert`` checks conversions on it.
    validation: str | None = None
    #: A JSON Lines file in the folder: request bodies held out from training, one per line, as
    #: ``POST /predict`` takes them. ``modelfn check`` runs the Python and JavaScript hooks on each;
    #: without ``validation``, ``--quantize`` verifies on the tensors the pre hook makes of them.
    validation_requests: RelativeFile | None = None
    #: Extra pip requirements the hooks need (the runtime's own are implied).
    dependencies: list[str] = []
    #: ``framework: pipeline`` only: the models to run, in order.
    steps: Annotated[list[Step], msgspec.Meta(max_length=32)] = []
    #: Coalesce concurrent requests into one inference call (see :class:`Batching`).
    batching: Batching | None = None
    #: Cloud sizing and packaging (see :class:`Deploy`); absent means the defaults.
    deploy: Deploy | None = None
    #: Voice and chat platforms (see :class:`Conversation`); absent means the defaults.
    conversation: Conversation = Conversation()
    #: The web page's widget for this model (see :class:`Page`).
    page: Page = Page()
    #: Files ``POST /predict`` takes beside JSON (see :class:`Uploads`); absent means JSON only.
    uploads: Uploads | None = None
    #: The load ends with one inference on zeros of the declared shapes (empty strings for BYTES),
    #: so the first request does not pay for lazy initialisation. ``off`` skips it, for a model
    #: that cannot take zeros (an image decoder, a tokenizer that refuses empty text).
    warmup: Literal["zeros", "off"] = "zeros"
    #: A tabular model: the inputs are named columns (see :class:`Table`).
    table: Table | None = None
    #: A generative model's limits and defaults (``framework: genai``, see :class:`Generation`).
    generation: Generation | None = None
    #: A text encoder: tokenizer, pooling, normalization (see :class:`Embedding`).
    embedding: Embedding | None = None
    #: Payload logging's redactions and the drift reference (see :class:`Monitoring`).
    monitoring: Monitoring = Monitoring()

    def __post_init__(self) -> None:
        for kind, specs in (("inputs", self.inputs), ("outputs", self.outputs)):
            names = [spec.name for spec in specs]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{kind} has duplicate tensor names: {', '.join(duplicates)}")
        if self.uploads is not None and self.hooks.pre is None:
            raise ValueError("`uploads` needs `hooks.pre`: the pre hook turns each uploaded file into tensors")
        traffic = self.deploy.traffic if self.deploy is not None else None
        if traffic is not None and self.version not in traffic:
            raise ValueError(
                f"deploy.traffic must name this contract's version {self.version!r}, the one this deploy pins "
                "(give it 0 to send it nothing)"
            )
        if self.batching is not None:
            if self.framework == "pipeline":
                raise ValueError("`batching` belongs to the models a pipeline runs, not to the pipeline")
            for kind, specs in (("inputs", self.inputs), ("outputs", self.outputs)):
                fixed = [spec.name for spec in specs if not spec.shape or spec.shape[0] != -1]
                if fixed:
                    raise ValueError(
                        f"`batching` joins requests along the first dimension, so it must be -1 in every tensor; "
                        f"{kind} {fixed} do not start with -1"
                    )
        if self.table is not None:
            self._check_table(self.table)
        if self.framework == "pipeline":
            self._check_pipeline()
            return
        if self.artifact is None:
            raise ValueError(f"framework {self.framework!r} needs `artifact` (its uri and sha256)")
        if self.steps:
            raise ValueError("`steps` belong to `framework: pipeline` only")
        if self.artifact.files and self.framework not in ("onnx", "genai"):
            raise ValueError("artifact.files (external data beside the model file) is for ONNX models only")
        if (self.framework == "genai") != (self.generation is not None):
            raise ValueError("`framework: genai` and `generation` (its limits and defaults) go together")
        if self.generation is not None:
            self._check_generative(self.generation)
        if self.embedding is not None:
            self._check_embedding(self.embedding)
        expected = {
            "onnx": {"onnx"},
            "genai": {"onnx"},
            "tensorflow": {"keras", "savedmodel"},
            "sklearn": {"skops"} | PICKLE_FORMATS,
            "pytorch": {"torch_export", "torchscript"},
        }[self.framework]
        if self.artifact.format not in expected:
            raise ValueError(
                f"a {self.framework} artifact must end in one of "
                f"{sorted(k for k, v in FORMATS.items() if v in expected)}, got {self.artifact.uri!r}"
            )

    def _check_table(self, table: Table) -> None:
        """Each input is a column: one value per row, of a datatype a column can hold."""
        for index, spec in enumerate(self.inputs):
            if spec.shape not in ([-1], [-1, 1]):
                raise ValueError(
                    f"inputs[{index}] ({spec.name}): a column of a table has shape [-1] or [-1, 1] "
                    f"(one value per row), got {spec.shape}"
                )
            if spec.datatype not in COLUMN_DATATYPES:
                raise ValueError(f"inputs[{index}] ({spec.name}): a column cannot be {spec.datatype}")
        datatypes = {spec.name: spec.datatype for spec in self.inputs}
        for name in table.nullable:
            if name not in datatypes:
                raise ValueError(f"table.nullable names {name!r}, which is not an input of this contract")
            text = datatypes[name] == "BYTES" and table.pass_as == "dataframe"
            if not datatypes[name].startswith("FP") and not text:
                raise ValueError(
                    f"table.nullable: {name!r} is {datatypes[name]}; only float columns (FP16, FP32, FP64: a "
                    "missing value is NaN) and, for a DataFrame, string columns (BYTES) may be nullable"
                )
        unknown = sorted(set(table.categories) - set(datatypes))
        if unknown:
            raise ValueError(f"table.categories names {unknown}, which are not inputs of this contract")
        if self.framework not in ("sklearn", "onnx"):
            raise ValueError(f"`table` is for scikit-learn and ONNX models, not {self.framework}")
        if self.framework == "onnx" and table.pass_as == "dataframe":
            raise ValueError("an ONNX model takes its columns as arrays: set table.as: arrays")

    def _check_generative(self, generation: Generation) -> None:
        """Text in, text out: what the non-streamed routes (``/v2``, ``/predict``) and batch jobs call."""
        for kind, specs in (("inputs", self.inputs), ("outputs", self.outputs)):
            if len(specs) != 1 or specs[0].datatype != "BYTES" or specs[0].shape not in ([1], [-1]):
                raise ValueError(
                    f"a generative model has one {kind[:-1]}, BYTES of shape [-1] (one text per prompt); "
                    f"{kind} is {[(s.name, s.datatype, s.shape) for s in specs]}"
                )
        needed = {"genai_config.json", "tokenizer.json"}
        if generation.chat_template is not None:
            needed.add(generation.chat_template)
        missing = sorted(needed - set(self.verified_artifact().files))
        if missing:
            raise ValueError(
                f"artifact.files must pin {missing}: ONNX Runtime GenAI reads them beside the model "
                "(modelfn digests FOLDER prints the block)"
            )
        if self.batching is not None:
            raise ValueError("`batching` does not apply to a generative model: each generation runs on its own")

    def _check_embedding(self, embedding: Embedding) -> None:
        """Token ids (and an attention mask) in, a vector per text out."""
        if self.framework != "onnx":
            raise ValueError("`embedding` is for ONNX text encoders (framework: onnx)")
        if embedding.tokenizer not in self.verified_artifact().files:
            raise ValueError(f"embedding.tokenizer {embedding.tokenizer!r} must be pinned in artifact.files")
        if not 1 <= len(self.inputs) <= 2 or any(spec.datatype not in ("INT64", "INT32") for spec in self.inputs):
            raise ValueError("an `embedding` model takes token ids and, second, an attention mask (INT64 or INT32)")
        if any(len(spec.shape) != 2 for spec in self.inputs):
            raise ValueError("an `embedding` model's inputs are [texts, tokens]: shape [-1, -1] or [-1, max_tokens]")
        name = embedding.output or self.outputs[0].name
        output = self.output(name)
        if output is None:
            raise ValueError(f"embedding.output {name!r} is not an output of this contract")
        rank = 2 if embedding.pooling == "none" else 3
        if len(output.shape) != rank or output.shape[-1] < 1:
            raise ValueError(
                f"embedding: the output {name!r} must be [texts, {'tokens, ' if rank == 3 else ''}dimensions] "
                f"with a fixed number of dimensions for pooling {embedding.pooling!r}; it is {output.shape}"
            )

    def _check_pipeline(self) -> None:
        """Every tensor a step reads exists by then, each is produced once, every output is produced."""
        if self.artifact is not None:
            raise ValueError("a pipeline has no `artifact`: its `steps` name the models it runs")
        if not self.steps:
            raise ValueError("a pipeline needs `steps`: the models to run, in order")
        available = {spec.name for spec in self.inputs}
        for index, step in enumerate(self.steps):
            where = f"steps[{index}] ({step.model})"
            if step.model == self.name:
                raise ValueError(f"{where}: a pipeline cannot run itself")
            missing = sorted(set(step.inputs.values()) - available)
            if missing:
                raise ValueError(
                    f"{where}: reads {missing}, which no pipeline input or earlier step provides "
                    f"(available: {sorted(available)})"
                )
            published = list(step.outputs.values())
            clashes = sorted({name for name in published if name in available or published.count(name) > 1})
            if clashes:
                raise ValueError(f"{where}: publishes {clashes} again; every tensor name is produced once")
            available.update(published)
        unproduced = sorted({spec.name for spec in self.outputs} - available)
        if unproduced:
            raise ValueError(f"outputs {unproduced} are produced by no step; map a step output to each name")

    @property
    def platform(self) -> str:
        return PLATFORMS[self.framework]

    def input(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.inputs if spec.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.outputs if spec.name == name), None)

    def verified_artifact(self) -> Artifact:
        """The artifact of a model (every framework but ``pipeline``, which validation guarantees)."""
        if self.artifact is None:
            raise ContractError(f"{self.name} is a pipeline: it has no artifact of its own")
        return self.artifact


class _Compiled(msgspec.Struct, frozen=True):
    source_sha256: str
    modelfn_version: str
    contract: Contract


def function_members(folder: str | Path) -> list[str]:
    """``[""]`` for a one-model folder, a group's sub-folders with a contract, or ``[]``: no function."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    if (folder / CONTRACT_FILE).is_file():
        return [""]
    return sorted(p.name for p in folder.iterdir() if (p / CONTRACT_FILE).is_file())


def load_contract(folder: str | Path) -> Contract:
    """Read and validate ``<folder>/modelfn.yaml``; raise :class:`ContractError` naming the problem.

    A compiled copy (see :data:`COMPILED_FILE`) is used when it matches the YAML byte for byte.
    """
    path = Path(folder) / CONTRACT_FILE
    raw = _read(path)
    compiled = _read_compiled(Path(folder), hashlib.sha256(raw).hexdigest())
    return compiled if compiled is not None else parse_contract(raw, source=str(path))


def compile_contract(folder: str | Path) -> Contract:
    """Validate the YAML contract and write its compiled JSON copy, unless a fresh one exists.

    Raises :class:`ContractError` for an invalid contract and ``OSError`` when the
    folder is not writable (the function then simply reads the YAML).
    """
    from modelfn import __version__

    folder = Path(folder)
    path = folder / CONTRACT_FILE
    raw = _read(path)
    digest = hashlib.sha256(raw).hexdigest()
    fresh = _read_compiled(folder, digest)
    if fresh is not None:
        return fresh
    contract = parse_contract(raw, source=str(path))
    target = folder / COMPILED_FILE
    target.parent.mkdir(exist_ok=True)
    write_atomically(target, msgspec.json.encode(_Compiled(digest, __version__, contract)), mode=0o644)
    return contract


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ContractError(f"{path}: cannot read the contract ({exc.strerror or exc})") from exc


def _read_compiled(folder: Path, yaml_sha256: str) -> Contract | None:
    """The compiled contract if it was made from YAML with this digest by this modelfn version."""
    from modelfn import __version__

    try:
        compiled = msgspec.json.decode((folder / COMPILED_FILE).read_bytes(), type=_Compiled)
    except (OSError, msgspec.DecodeError):  # absent, unreadable or stale schema: use the YAML
        return None
    if compiled.modelfn_version != __version__ or not hmac.compare_digest(compiled.source_sha256, yaml_sha256):
        return None
    return compiled.contract


def parse_contract(raw: bytes | str, *, source: str = CONTRACT_FILE) -> Contract:
    """Validate contract text; ``source`` names the file in error messages."""
    import msgspec.yaml  # PyYAML underneath; only needed when a contract is read

    try:
        return msgspec.yaml.decode(raw, type=Contract)
    except msgspec.ValidationError as exc:
        raise ContractError(f"{source}: {_located(str(exc))}") from None
    except msgspec.DecodeError as exc:
        detail = str(exc).replace('in "<unicode string>", ', "")
        raise ContractError(f"{source}: not valid YAML: {detail}") from None


_LOCATION = re.compile(r"^(?P<problem>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)


def _located(message: str) -> str:
    """Turn msgspec's ``Expected X - at `$.a.b``` into ``field `a.b`: expected X``."""
    match = _LOCATION.match(message)
    if not match:
        return message[:1].lower() + message[1:]
    field = match["path"].lstrip(".") or "(top level)"
    problem = match["problem"]
    return f"field `{field}`: {problem[:1].lower()}{problem[1:]}"


def resolve_local_artifact(contract: Contract, folder: str | Path) -> Path:
    """The artifact's path for a local URI, refused if it leaves the function folder.

    ``file:///abs/path`` is taken as given (an operator's explicit choice); a
    relative path must stay inside the folder, so a contract copied from
    elsewhere cannot read arbitrary files.
    """
    uri = contract.verified_artifact().uri
    if uri.startswith("file://"):
        path = Path(uri.removeprefix("file://"))
        if not path.is_absolute():
            raise ContractError(f"field `artifact.uri`: file:// URIs must be absolute, got {uri!r}")
        return path
    if "://" in uri:
        raise ContractError(
            f"field `artifact.uri`: expected a path relative to the function folder or a file:// URI, got {uri!r}"
        )
    base = Path(folder).resolve()
    path = (base / uri).resolve()
    if not path.is_relative_to(base):
        raise ContractError(f"field `artifact.uri`: {uri!r} points outside the function folder")
    return path
