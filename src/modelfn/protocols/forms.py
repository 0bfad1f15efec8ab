"""What ``POST /predict``'s body becomes: JSON, or the files a contract's ``uploads:`` accepts.

- ``multipart/form-data``: parsed with python-multipart (the parser Starlette and FastAPI use),
  each file part checked against ``uploads`` (media type, size, count) and each text field against
  the string limit. Parts arrive as ``{field: Upload or str}``; a repeated field as a list.
- a raw body whose ``Content-Type`` the contract accepts: ``{uploads.field: Upload}``.
- anything else is JSON, whatever it is labelled (``curl -d`` sends JSON as form-urlencoded), except
  binary and multipart types a model does not accept: a 415 naming what it does.

An image's declared type must agree with its bytes' signature, so a part called ``image/png``
that holds something else is refused before any decoder sees it. Limits are checked from the
body's size before parsing, then per part as it is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelfn.errors import MalformedBody, PayloadTooLarge, UnsupportedMediaType
from modelfn.http import Request, parse_json
from modelfn.upload import Upload

if TYPE_CHECKING:
    from modelfn.contract import Uploads
    from modelfn.settings import Settings

#: Leading bytes of the image formats a contract may list.
SIGNATURES = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/bmp": (b"BM",),
    "image/tiff": (b"II*\x00", b"MM\x00*"),
    "image/webp": (b"RIFF",),  # and WEBP at offset 8, checked below
}
#: Types never read as JSON: a model that does not accept them answers 415.
_BINARY = ("image/", "audio/", "video/", "multipart/", "application/octet-stream", "application/pdf")
#: Form parts of one request, files and fields together.
MAX_PARTS = 64
#: Bytes a multipart body may hold beyond its files (boundaries, part headers, text fields).
FORM_OVERHEAD = 64 << 10


def read_payload(request: Request, uploads: Uploads | None, settings: Settings) -> Any:
    """The hook's payload from the body, by its ``Content-Type``; a 4xx says what was wrong."""
    header = request.headers.get("Content-Type", "")
    media_type = media_type_of(header)
    if uploads is not None and media_type == "multipart/form-data":
        return _multipart(request, _options(header).get("boundary", ""), uploads, settings)
    if uploads is not None and uploads.accepts(media_type):
        _check_length(request, uploads.max_bytes, f"a {media_type} body")
        return {uploads.field: _checked(request.body, media_type, None, uploads)}
    if media_type.startswith(_BINARY):
        accepted = ["application/json"] + (["multipart/form-data", *uploads.media_types] if uploads else [])
        raise UnsupportedMediaType(
            f"this model does not take {media_type[:100]} bodies; it takes {', '.join(accepted)}"
        )
    return parse_json(request.body, settings)


def media_type_of(header: str) -> str:
    """The ``type/subtype`` of a ``Content-Type`` header, lower-cased.

    Read without python-multipart, which a function carries only when its contract takes uploads:
    every JSON request comes through here.
    """
    return header[:1024].split(";", 1)[0].strip().lower()


def _options(header: str) -> dict[str, str]:
    """A ``Content-Type`` header's parameters (quoted or not), for a contract that takes uploads."""
    from python_multipart.multipart import parse_options_header

    _, options = parse_options_header(header[:1024])
    return {key.decode("latin-1").lower(): val.decode("latin-1") for key, val in options.items()}


def _check_length(request: Request, limit: int, what: str) -> None:
    size = len(request.body)  # as received, or as inflated (Content-Encoding): not the header's figure
    if size > limit:
        raise PayloadTooLarge(f"{what} of {size:,} bytes is over this model's limit of {limit:,} bytes")


def _checked(data: bytes, media_type: str, filename: str | None, uploads: Uploads) -> Upload:
    """An :class:`Upload` of bytes already held to ``max_bytes``, an image's signature matched to its type."""
    if media_type.startswith("image/"):
        signatures = SIGNATURES.get(media_type)
        if signatures is None:
            raise UnsupportedMediaType(f"{media_type[:100]} images are not decoded; send one of {sorted(SIGNATURES)}")
        matches = data.startswith(signatures) and (media_type != "image/webp" or data[8:12] == b"WEBP")
        if not matches:
            actual = next((kind for kind, heads in SIGNATURES.items() if data.startswith(heads)), None)
            said = f"the bytes are {actual}" if actual else "the bytes are no image format modelfn knows"
            raise UnsupportedMediaType(f"the file is declared {media_type}, but {said}")
    return Upload(data, media_type, filename, uploads.max_pixels)


def _multipart(request: Request, boundary: str, uploads: Uploads, settings: Settings) -> dict[str, Any]:
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    if not boundary or len(boundary) > 200:
        raise MalformedBody("a multipart/form-data body needs a boundary parameter of at most 200 characters")
    _check_length(request, uploads.max_files * uploads.max_bytes + FORM_OVERHEAD, "a form")
    parts: list[dict[str, Any]] = []
    header: list[bytes] = [b"", b""]

    def begin() -> None:
        if len(parts) >= MAX_PARTS:
            raise PayloadTooLarge(f"the form has more than {MAX_PARTS} parts")
        parts.append({"headers": {}, "data": bytearray()})

    def data(chunk: bytes, start: int, end: int) -> None:
        part = parts[-1]
        part["data"] += chunk[start:end]
        if len(part["data"]) > uploads.max_bytes:
            raise PayloadTooLarge(f"a form part is over this model's limit of {uploads.max_bytes:,} bytes")

    def field(chunk: bytes, start: int, end: int) -> None:
        header[0] += chunk[start:end]

    def value(chunk: bytes, start: int, end: int) -> None:
        header[1] += chunk[start:end]

    def header_end() -> None:
        parts[-1]["headers"][header[0].decode("latin-1").lower()] = header[1].decode("latin-1")
        header[0], header[1] = b"", b""

    callbacks = {"on_part_begin": begin, "on_part_data": data, "on_header_field": field,
                 "on_header_value": value, "on_header_end": header_end}  # fmt: skip
    parser = MultipartParser(boundary, callbacks, max_header_count=8, max_header_size=1024)  # type: ignore[arg-type]
    try:
        parser.write(request.body)
        parser.finalize()
    except MultipartParseError as exc:
        raise MalformedBody(f"the multipart/form-data body is malformed: {exc}") from None
    payload: dict[str, Any] = {}
    files = 0
    for part in parts:
        disposition, options = parse_options_header(part["headers"].get("content-disposition", ""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if disposition != b"form-data" or not name:
            raise MalformedBody("each form part needs Content-Disposition: form-data with a name")
        filename = options.get(b"filename")
        content: bytes = bytes(part["data"])
        if filename is None and "content-type" not in part["headers"]:
            if len(content) > settings.max_string_bytes:
                raise PayloadTooLarge(f"form field {name[:64]!r} is over {settings.max_string_bytes:,} bytes")
            item: Any = content.decode("utf-8", "replace")
        else:
            files += 1
            if files > uploads.max_files:
                raise PayloadTooLarge(f"the form holds more than {uploads.max_files} file(s), this model's limit")
            media_type = media_type_of(part["headers"].get("content-type", "application/octet-stream"))
            if not uploads.accepts(media_type):
                raise UnsupportedMediaType(
                    f"form part {name[:64]!r} is {media_type[:100]}; this model takes {', '.join(uploads.media_types)}"
                )
            shown = filename.decode("utf-8", "replace")[:255] if filename is not None else None
            item = _checked(content, media_type, shown, uploads)
        if name in payload:
            previous = payload[name]
            payload[name] = [*previous, item] if isinstance(previous, list) else [previous, item]
        else:
            payload[name] = item
    if not payload:
        raise MalformedBody("the form holds no parts")
    return payload
