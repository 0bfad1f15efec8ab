"""A file sent to ``POST /predict``, as a pre-processing hook receives it.

A contract with ``uploads:`` accepts ``multipart/form-data`` (each file part arrives under its form
field's name) and raw bodies of its media types (under ``uploads.field``). The hook decides what the
bytes become; :func:`modelfn.payload.image` decodes an image within the contract's pixel limit.
"""

from __future__ import annotations

from typing import NamedTuple


class Upload(NamedTuple):
    """One uploaded file: its bytes, the media type it was checked as, and what the client named it."""

    data: bytes
    media_type: str
    #: The client's file name (multipart only); informational, never used as a path.
    filename: str | None = None
    #: The contract's ``uploads.max_pixels``: :func:`modelfn.payload.image` refuses larger images.
    max_pixels: int = 4_000_000
