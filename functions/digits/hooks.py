"""Pre/post-processing for the digits model: plain JSON or a photo in, plain JSON out.

``POST /predict`` with ``{"image": [[...8 numbers...] x 8]}`` (pixel values 0..16,
as scikit-learn's ``load_digits`` gives them), ``{"images": [image, ...]}``, or a PNG or
JPEG of one handwritten digit (``curl -F image=@digit.png``, or the raw file)
answers ``{"digit": 7, "probabilities": [...]}`` (or ``{"predictions": [...]}``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelfn import InvalidInput, Upload
from modelfn.payload import field, image, numbers

MAX_IMAGES = 256


def preprocess(payload: Any) -> dict[str, np.ndarray]:
    if not isinstance(payload, dict) or ("image" in payload) == ("images" in payload):
        raise InvalidInput('send {"image": 8x8 pixel rows} or {"images": [image, ...]}, or a PNG or JPEG file')
    if isinstance(payload.get("image"), Upload):  # a photo or a scan: curl -F image=@digit.png
        return {"pixels": from_photo(image(payload["image"])).reshape(1, 64)}
    images = [field(payload, "image", list)] if "image" in payload else field(payload, "images", list)
    if not 1 <= len(images) <= MAX_IMAGES:
        raise InvalidInput(f"`images` must be a list of 1 to {MAX_IMAGES} images")
    # Numbers only (no "5", no true), 8 rows of 8 each, every pixel in 0..16.
    pixels = numbers(images, "pixel values", shape=(None, 8, 8), low=0, high=16)
    return {"pixels": pixels.reshape(len(images), 64)}


def from_photo(grey: np.ndarray) -> np.ndarray:
    """A photo or scan of one handwritten digit as load_digits' 8x8 grid of ink, 0..16.

    The ink is whichever side of the mean the fewest pixels are on (dark on paper, or light on a
    dark background). Its bounding box, centred in a square as long as its longer side (as
    load_digits' digits fill their grid), is averaged down to 8x8, each cell the mean ink of its
    block, and scaled to 0..16.
    """
    values = grey.astype(np.float32) / 255.0
    ink = 1.0 - values if (values < values.mean()).sum() < values.size / 2 else values
    ink = np.clip((ink - np.percentile(ink, 50)) / max(float(ink.max() - np.percentile(ink, 50)), 1e-6), 0.0, 1.0)
    rows, cols = np.nonzero(ink > 0.25)
    if rows.size == 0:
        raise InvalidInput("the image holds no visible digit")
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    side = int(max(bottom - top, right - left))  # load_digits' digits fill their grid's height
    canvas = np.zeros((side, side), np.float32)
    y, x = (side - (bottom - top)) // 2, (side - (right - left)) // 2
    canvas[y : y + bottom - top, x : x + right - left] = ink[top:bottom, left:right]
    edges = np.linspace(0, side, 9).astype(int)
    cells = np.array([[canvas[edges[r] : edges[r + 1], edges[c] : edges[c + 1]].mean() for c in range(8)]
                      for r in range(8)])  # fmt: skip
    return np.round(16.0 * cells / max(float(cells.max()), 1e-6)).astype(np.float32)


def postprocess(outputs: dict[str, np.ndarray], payload: dict[str, Any]) -> dict[str, Any]:
    answers = [
        {"digit": int(label), "probabilities": [round(float(p), 6) for p in probabilities]}
        for label, probabilities in zip(outputs["label"], outputs["probabilities"], strict=True)
    ]
    return answers[0] if "image" in payload else {"predictions": answers}
