// The browser's twin of hooks.py for JSON bodies: {"image": 8 rows of 8} or {"images": [...]}.
// modelfn check runs both on the example and on the 360 held-out requests and fails when they
// disagree; photos (uploads) need Pillow and are answered by the function only.

export const MAX_IMAGES = 256;

class InvalidInput extends Error {
  name = "InvalidInput";
}

export function preprocess(payload) {
  if (payload === null || typeof payload !== "object" || Array.isArray(payload) || ("image" in payload) === ("images" in payload)) {
    throw new InvalidInput('send {"image": 8x8 pixel rows} or {"images": [image, ...]}, or a PNG or JPEG file');
  }
  const images = "image" in payload ? [payload.image] : payload.images;
  if (!Array.isArray(images)) throw new InvalidInput(`\`${"image" in payload ? "image" : "images"}\` must be a list`);
  if (images.length < 1 || images.length > MAX_IMAGES) {
    throw new InvalidInput(`\`images\` must be a list of 1 to ${MAX_IMAGES} images`);
  }
  // Numbers only (no "5", no true), 8 rows of 8 each, every pixel in 0..16.
  const pixels = new Float32Array(images.length * 64);
  images.forEach((image, index) => {
    if (!Array.isArray(image) || image.length !== 8) throw new InvalidInput("pixel values must have shape [n, 8, 8]");
    image.forEach((row, r) => {
      if (!Array.isArray(row) || row.length !== 8) throw new InvalidInput("pixel values must have shape [n, 8, 8]");
      row.forEach((value, c) => {
        if (typeof value !== "number" || !Number.isFinite(value)) throw new InvalidInput("pixel values must be numbers");
        if (value < 0 || value > 16) throw new InvalidInput("pixel values must be between 0 and 16");
        pixels[index * 64 + r * 8 + c] = value;
      });
    });
  });
  return { pixels: { type: "float32", data: pixels, dims: [images.length, 64] } };
}

export function postprocess(outputs, payload) {
  const classes = outputs.probabilities.dims[1];
  const answers = Array.from(outputs.label.data, (label, row) => ({
    digit: Number(label),
    probabilities: Array.from(outputs.probabilities.data.subarray(row * classes, (row + 1) * classes), round6),
  }));
  return "image" in payload ? answers[0] : { predictions: answers };
}

function round6(value) {
  return Math.round(value * 1e6) / 1e6;
}
