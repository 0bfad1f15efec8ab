"""The plain JSON route through the digits hooks, in-process."""

from __future__ import annotations

import pytest


def test_one_image_and_a_batch(digits_client, heldout) -> None:
    x, y = heldout
    one = digits_client.post("/predict", json={"image": x[0].reshape(8, 8).tolist()}).get_json()
    assert one["digit"] == y[0] and abs(sum(one["probabilities"]) - 1) < 1e-3
    images = [image.reshape(8, 8).tolist() for image in x[:200]]
    batch = digits_client.post("/predict", json={"images": images}).get_json()["predictions"]
    assert sum(p["digit"] == label for p, label in zip(batch, y[:200], strict=True)) >= 190


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, 'send {"image": 8x8 pixel rows}'),
        ({"image": [[0] * 8] * 7}, "must be shaped Nx8x8, got 1x7x8"),
        ({"image": [[-1] * 8] * 8}, "between 0 and 16"),
        ({"images": [[[0] * 8] * 8] * 300}, "1 to 256 images"),
        # No coercion through the hook either: strings, booleans, nulls and objects are not pixels.
        ({"image": [["5"] * 8] * 8}, "must be numbers, got strings"),
        ({"image": [[True] * 8] * 8}, "must be numbers, got true/false"),
        ({"image": [[0] * 8] * 7 + [[0] * 7 + [None]]}, "must be numbers of one kind"),
        ({"image": "0" * 64}, "'image' must be a list, got a string"),
        ({"images": {"0": [[0] * 8] * 8}}, "'images' must be a list, got an object"),
        ({"image": [[0] * 8] * 7 + [[0] * 7]}, "ragged"),
        ({"image": [[1e309] * 8] * 8}, "not valid JSON"),
    ],
)
def test_the_hook_explains_bad_payloads(digits_client, body, message) -> None:
    response = digits_client.post("/predict", json=body)
    assert response.status_code == 400 and message in response.get_json()["error"]
