// The browser's twin of hooks.py and text_features.py: a question in, an answer out.
// The answers' texts come from answers.json, as in Python; modelfn check runs both hooks on the
// example and on the 131 held-out phrasings and fails when they disagree.
import document from "./answers.json" with { type: "json" };

export const MAX_TEXTS = 32;
export const MAX_CHARACTERS = 500;
export const DIMENSIONS = 2048;
const INTENTS = Object.keys(document.answers);
const WORD = /[a-z0-9]+/g;

class InvalidInput extends Error {
  name = "InvalidInput";
}

export function preprocess(payload) {
  if (payload === null || typeof payload !== "object" || Array.isArray(payload) || ("text" in payload) === ("texts" in payload)) {
    throw new InvalidInput('send {"text": "your question"} or {"texts": ["question", ...]}');
  }
  const texts = "text" in payload ? [payload.text] : payload.texts;
  if (!Array.isArray(texts) || texts.length < 1 || texts.length > MAX_TEXTS) {
    throw new InvalidInput(`\`texts\` must be a list of 1 to ${MAX_TEXTS} questions`);
  }
  for (const text of texts) {
    if (typeof text !== "string" || !text.trim()) throw new InvalidInput("each question must be a non-empty string");
    // Python counts code points, not UTF-16 units.
    const length = [...text].length;
    if (length > MAX_CHARACTERS) {
      throw new InvalidInput(`a question may have at most ${MAX_CHARACTERS} characters, got ${length}`);
    }
  }
  return { features: { type: "float32", data: features(texts), dims: [texts.length, DIMENSIONS] } };
}

// Words, word pairs and the three-letter pieces of each word, hashed with CRC-32 into DIMENSIONS
// buckets, log-counted and scaled to unit length (text_features.py).
export function tokens(text) {
  const words = text.toLowerCase().match(WORD) || [];
  const found = words.map((word) => `w:${word}`);
  for (let i = 1; i < words.length; i++) found.push(`b:${words[i - 1]} ${words[i]}`);
  for (const word of words) {
    const padded = `<${word}>`;
    for (let i = 0; i + 3 <= padded.length; i++) found.push(`c:${padded.slice(i, i + 3)}`);
  }
  return found;
}

export function features(texts) {
  const rows = new Float32Array(texts.length * DIMENSIONS);
  texts.forEach((text, row) => {
    const counts = new Float64Array(DIMENSIONS);
    for (const token of tokens(text)) counts[crc32(token) % DIMENSIONS] += 1;
    let norm = 0;
    for (let i = 0; i < DIMENSIONS; i++) {
      counts[i] = Math.fround(Math.log1p(counts[i]));
      norm += counts[i] * counts[i];
    }
    norm = Math.sqrt(norm);
    for (let i = 0; i < DIMENSIONS; i++) rows[row * DIMENSIONS + i] = norm > 0 ? counts[i] / norm : 0;
  });
  return rows;
}

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

// zlib.crc32 of the UTF-8 bytes.
export function crc32(text) {
  let crc = 0xffffffff;
  for (const byte of new TextEncoder().encode(text)) crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

export function postprocess(outputs, payload) {
  const classes = outputs.probabilities.dims[1];
  const rows = outputs.probabilities.dims[0];
  const answers = [];
  for (let row = 0; row < rows; row++) {
    answers.push(answer(outputs.probabilities.data.subarray(row * classes, (row + 1) * classes)));
  }
  return "text" in payload ? answers[0] : { answers };
}

function answer(probabilities) {
  const ranked = Array.from(probabilities.keys()).sort((a, b) => probabilities[b] - probabilities[a]).slice(0, 3);
  const best = ranked[0];
  const confident = probabilities[best] >= document.min_confidence;
  return {
    intent: confident ? INTENTS[best] : null,
    confidence: round4(probabilities[best]),
    answer: confident ? document.answers[INTENTS[best]] : document.fallback,
    alternatives: ranked.map((i) => ({ intent: INTENTS[i], confidence: round4(probabilities[i]) })),
  };
}

function round4(value) {
  return Math.round(value * 1e4) / 1e4;
}
