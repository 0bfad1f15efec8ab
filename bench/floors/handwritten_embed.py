"""The hand-written embeddings function: functions-framework, the tokenizer and ONNX Runtime loaded at import,
mean pooling and normalization in NumPy, OpenAI's embeddings answer with float vectors."""

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

FOLDER = Path(os.environ["BENCH_MODEL"])
session = ort.InferenceSession(str(FOLDER / "model.onnx"), providers=["CPUExecutionProvider"])
tokenizer = Tokenizer.from_file(str(FOLDER / "tokenizer.json"))  # padded to 32 as it was saved


def handle(request):
    body = request.get_json()
    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
    encoded = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encoded], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
    (hidden,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
    pooled = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)
    vectors = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
    tokens = int(mask.sum())
    return {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
