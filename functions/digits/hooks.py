"""Pre/post-processing for the digits model: plain JSON in, plain JSON out.

``POST /predict`` with ``{"image": [[...8 numbers...] x 8]}`` (pixel values 0..16,
as scikit-learn's ``load_digits`` gives them) or ``{"images": [image, ...]}``
answers ``{"digit": 7, "probabilities": [...]}`` (or ``{"predictions": [...]}``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelfn import InvalidInput
from modelfn.payload import field, numbers

MAX_IMAGES = 256


def preprocess(payload: Any) -> dict[str, np.ndarray]:
    if not isinstance(payload, dict) or ("image" in payload) == ("images" in payload):
        raise InvalidInput('send {"image": 8x8 pixel rows} or {"images": [image, ...]}')
    images = [field(payload, "image", list)] if "image" in payload else field(payload, "images", list)
    if not 1 <= len(images) <= MAX_IMAGES:
        raise InvalidInput(f"`images` must be a list of 1 to {MAX_IMAGES} images")
    # Numbers only (no "5", no true), 8 rows of 8 each, every pixel in 0..16.
    pixels = numbers(images, "pixel values", shape=(None, 8, 8), low=0, high=16)
    return {"pixels": pixels.reshape(len(images), 64)}


def postprocess(outputs: dict[str, np.ndarray], payload: dict[str, Any]) -> dict[str, Any]:
    answers = [
        {"digit": int(label), "probabilities": [round(float(p), 6) for p in probabilities]}
        for label, probabilities in zip(outputs["label"], outputs["probabilities"], strict=True)
    ]
    return answers[0] if "image" in payload else {"predictions": answers}
