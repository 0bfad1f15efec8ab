"""Strict checks for pre-processing hooks: a payload's fields, their types and their ranges.

A hook turns ``POST /predict``'s JSON into tensors, and the rules of the tensor protocols hold there
too: a string is not a number, ``true`` is not ``1``, a float is not an integer, and a value out of
range is refused, not clipped. Each check raises :class:`~modelfn.InvalidInput` (a 400 whose message
names the field), so a hook stays a few lines::

    from modelfn.payload import field, numbers

    def preprocess(payload):
        images = field(payload, "images", list)
        pixels = numbers(images, "pixel values", shape=(None, 8, 8), low=0, high=16)
        return {"pixels": pixels.reshape(len(pixels), 64)}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

from modelfn.errors import InvalidInput
from modelfn.tensors import to_array

T = TypeVar("T")
_MISSING = object()


def field(payload: Any, name: str, kind: type[T], *, default: Any = _MISSING) -> T:
    """``payload[name]``, which must be exactly of ``kind`` (``bool`` is not an ``int``, ``int`` not a ``float``
    unless ``kind`` is ``float``); without a ``default`` the field is required."""
    if not isinstance(payload, dict):
        raise InvalidInput(f"the body must be a JSON object with {name!r}")
    if name not in payload:
        if default is _MISSING:
            raise InvalidInput(f"{name!r} is missing")
        return default
    value = payload[name]
    allowed: tuple[type, ...] = (int, float) if kind is float else (kind,)
    if type(value) not in allowed:
        raise InvalidInput(f"{name!r} must be {_kind_name(kind)}, got {_kind_name(type(value))}")
    return value


def numbers(
    value: Any,
    where: str,
    *,
    shape: Sequence[int | None] | None = None,
    low: float | None = None,
    high: float | None = None,
    datatype: str = "FP32",
) -> np.ndarray:
    """JSON numbers (nested lists) as an array of ``datatype``, by the tensor protocols' rules.

    ``shape`` gives each dimension, ``None`` for any length; ``low`` and ``high`` bound every value
    (inclusive). NaN and infinity are refused for float datatypes.
    """
    array = to_array(value, datatype, where=where)
    if shape is not None and (
        array.ndim != len(shape)
        or any(want is not None and want != got for want, got in zip(shape, array.shape, strict=True))
    ):
        wanted = "x".join("N" if want is None else str(want) for want in shape)
        raise InvalidInput(f"{where} must be shaped {wanted}, got {'x'.join(map(str, array.shape)) or 'a scalar'}")
    if array.size:
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise InvalidInput(f"{where} must be finite: NaN and infinity are not accepted")
        if (low is not None and array.min() < low) or (high is not None and array.max() > high):
            raise InvalidInput(f"{where} must be between {_bound(low)} and {_bound(high)}")
    return array


def _bound(value: float | None) -> str:
    return "any" if value is None else f"{value:g}"


def _kind_name(kind: type) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object", type(None): "null"}.get(kind, kind.__name__)  # fmt: skip


#: Pillow's names for the image media types modelfn checks (see :mod:`modelfn.protocols.forms`).
_PILLOW_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/bmp": "BMP",
                   "image/tiff": "TIFF", "image/webp": "WEBP"}  # fmt: skip


def image(upload: Any, where: str = "image", *, mode: str = "L") -> np.ndarray:
    """An uploaded image (a :class:`modelfn.Upload`) as an array of ``mode`` (``L``: grey, ``RGB``).

    Pillow reads the header first; an image over the contract's ``uploads.max_pixels``
    (width x height) is refused before a pixel is decoded, as is a file whose format is not the
    media type it was checked as, or one Pillow cannot decode. Needs Pillow (``pip install pillow``).
    """
    from modelfn.upload import Upload

    if not isinstance(upload, Upload):
        raise InvalidInput(f"{where!r} must be an uploaded image file (multipart/form-data or a raw image body)")
    expected = _PILLOW_FORMATS.get(upload.media_type)
    if expected is None:
        raise InvalidInput(f"{where!r} is {upload.media_type}, not an image type this function decodes")
    import importlib.util
    import io
    import warnings

    if importlib.util.find_spec("PIL") is None:
        from modelfn.errors import ContractError

        raise ContractError("decoding uploaded images needs Pillow: add pillow to the contract's dependencies")
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(upload.data), formats=[expected])  # the header only
            width, height = opened.size
            if width * height > upload.max_pixels:
                raise InvalidInput(f"{where!r} is {width}x{height} pixels, over the limit of {upload.max_pixels:,}")
            opened.load()
            return np.asarray(opened.convert(mode))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # Pillow's own, larger bound
        raise InvalidInput(f"{where!r} is over the limit of {upload.max_pixels:,} pixels: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"{where!r} is not a decodable {upload.media_type} image: {exc}") from None
