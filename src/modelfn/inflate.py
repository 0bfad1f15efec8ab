"""Request bodies sent compressed (``Content-Encoding: gzip`` or ``deflate``), inflated within a bound.

The inflated size counts against the body limit (``MODELFN_MAX_BODY_BYTES``) as it inflates: zlib
is asked for at most one byte more than the limit, so a bomb (a few KB that would inflate to
gigabytes) is refused after the limit's worth of work, never more. Truncated or corrupt data, and
bytes after the compressed stream, are a 400.
"""

from __future__ import annotations

import zlib

from modelfn.errors import MalformedBody, PayloadTooLarge, UnsupportedMediaType

#: ``Content-Encoding`` values and their zlib window settings (``deflate`` is zlib-wrapped, RFC 9110).
ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` decoded from ``encoding`` (one of :data:`ENCODINGS`), at most ``limit`` bytes of it."""
    wbits = ENCODINGS.get(encoding)
    if wbits is None:
        accepted = ", ".join(sorted(ENCODINGS))
        raise UnsupportedMediaType(f"Content-Encoding {encoding[:40]!r} is not accepted; send {accepted} or none")
    try:
        return _inflate(body, wbits, limit)
    except zlib.error:
        if encoding != "deflate":
            raise MalformedBody(f"the body is not valid {encoding} data") from None
    try:  # some clients send raw DEFLATE under "deflate", without the zlib wrapper
        return _inflate(body, -zlib.MAX_WBITS, limit)
    except zlib.error:
        raise MalformedBody("the body is not valid deflate data") from None


def _inflate(body: bytes, wbits: int, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    data = inflater.decompress(body, limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"the body inflates to over {limit:,} bytes, the limit")
    if not inflater.eof:
        raise MalformedBody("the compressed body is truncated")
    if inflater.unused_data:
        raise MalformedBody("the body has bytes after its compressed data")
    return data
