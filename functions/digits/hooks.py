"""Pre/post-processing for the digits model: plain JSON in, plain JSON out.

``POST /predict`` with ``{"image": [[...8 numbers...] x 8]}`` (pixel values 0..16,
as scikit-learn's ``load_digits`` gives them) or ``{"images": [image, ...]}``
answers ``{"digit": 7, "probabilities": [...]}`` (or ``{"predictions": [...]}``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelfn import InvalidInput

MAX_IMAGES = 256


def preprocess(payload: Any) -> dict[str, np.ndarray]:
    if not isinstance(payload, dict) or ("image" in payload) == ("images" in payload):
        raise InvalidInput('send {"image": 8x8 pixel rows} or {"images": [image, ...]}')
    images = [payload["image"]] if "image" in payload else payload["images"]
    if not isinstance(images, list) or not 1 <= len(images) <= MAX_IMAGES:
        raise InvalidInput(f"`images` must be a list of 1 to {MAX_IMAGES} images")
    try:
        pixels = np.asarray(images, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidInput("each image must be 8 rows of 8 numbers") from None
    if pixels.shape[1:] != (8, 8):
        raise InvalidInput(f"each image must be 8 rows of 8 numbers, got shape {list(pixels.shape[1:])}")
    if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 16:
        raise InvalidInput("pixel values must be between 0 and 16")
    return {"pixels": pixels.reshape(len(images), 64)}


def postprocess(outputs: dict[str, np.ndarray], payload: dict[str, Any]) -> dict[str, Any]:
    answers = [
        {"digit": int(label), "probabilities": [round(float(p), 6) for p in probabilities]}
        for label, probabilities in zip(outputs["label"], outputs["probabilities"], strict=True)
    ]
    return answers[0] if "image" in payload else {"predictions": answers}
