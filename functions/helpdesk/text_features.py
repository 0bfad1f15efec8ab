"""The helpdesk's tokenizer: text -> a fixed-size vector, shared by training and the pre hook.

Words, word pairs and the three-letter pieces of each word are hashed (CRC-32, the same on every
machine and Python run, unlike ``hash()``) into :data:`DIMENSIONS` buckets, counted with sublinear
weight, and scaled to unit length. The letter pieces let a misspelt or unseen form ("deploying",
"deploymnet") land near the words the model was trained on; no vocabulary file is needed.
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections.abc import Iterable

import numpy as np

DIMENSIONS = 2048
_WORD = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    """The hashed features of one text, before counting."""
    words = _WORD.findall(text.lower())
    found = [f"w:{word}" for word in words]
    found += [f"b:{first} {second}" for first, second in itertools.pairwise(words)]
    for word in words:
        padded = f"<{word}>"
        found += [f"c:{padded[i : i + 3]}" for i in range(len(padded) - 2)]
    return found


def features(texts: Iterable[str]) -> np.ndarray:
    """``(len(texts), DIMENSIONS)`` float32 rows, each of unit length (all zeros for a text with no words)."""
    texts = list(texts)
    rows = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
    for row, text in enumerate(texts):
        for token in tokens(text):
            rows[row, zlib.crc32(token.encode()) % DIMENSIONS] += 1.0
    np.log1p(rows, out=rows)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    np.divide(rows, norms, out=rows, where=norms > 0)
    return rows
