"""Train the embed model: a small text encoder whose vectors put questions of one intent close together.

    python functions/embed/train.py [--out DIR] [--epochs N]

The text is the repository's own, the helpdesk's questions by intent (``functions/helpdesk/intents.yaml``),
split as the helpdesk classifier's data is (the same seed, stratified, 75/25). The encoder is a BERT of
2 layers, 64 wide (``transformers``), over a BPE vocabulary of 1,024 tokens trained on the
training questions (``tokenizers``). It learns with a contrastive loss (InfoNCE): two questions of the
same intent are a pair, the other questions of the batch are the negatives. Mean pooling over the
attention mask and L2 normalization make the embedding, as the contract declares them.

The figure recorded is a retrieval one: each held-out question's nearest training question (cosine)
is of the same intent for the share printed, computed with the exported ONNX model the function serves.
PyTorch runs on one thread, seeded: the same machine and versions give the same bytes.

Needs ``pip install 'modelfn[train,convert]'`` and torch.
"""

from __future__ import annotations

import argparse
import hashlib
import random
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

SEED = 20261124
MAX_TOKENS = 32
DIMENSIONS = 64


def turns_by_intent() -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """The chat model's split of the helpdesk's questions (functions/chat/train.py), imported by path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("modelfn_chat_train", HERE.parent / "chat" / "train.py")
    chat = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(chat)  # type: ignore[union-attr]
    return chat.turns_by_intent()


def tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    # Plain BPE: tokenizers' WordPiece trainer (and BPE with a "##" prefix) break ties differently from run
    # to run; this one writes the same vocabulary every time.
    raw = Tokenizer(models.BPE(unk_token="[UNK]"))
    raw.normalizer = normalizers.BertNormalizer(lowercase=True)
    raw.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.BpeTrainer(vocab_size=1024, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"],
                                  show_progress=False)  # fmt: skip
    raw.train_from_iterator(texts, trainer)
    specials = [(token, raw.token_to_id(token)) for token in ("[CLS]", "[SEP]")]
    raw.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=specials)
    raw.enable_truncation(MAX_TOKENS)
    raw.enable_padding(length=MAX_TOKENS, pad_id=0, pad_token="[PAD]")
    return raw


def encoder(vocabulary: int):
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(SEED)
    config = BertConfig(vocab_size=vocabulary, hidden_size=DIMENSIONS, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=MAX_TOKENS, type_vocab_size=1)  # fmt: skip
    return BertModel(config, add_pooling_layer=False)


def embed(model, ids, mask):
    import torch

    hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    pooled = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    return torch.nn.functional.normalize(pooled, dim=-1)


def train(model, raw, by_intent: dict[str, list[str]], epochs: int) -> None:
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    order = random.Random(SEED)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    names = sorted(by_intent)
    for epoch in range(epochs):
        total = 0.0
        for _ in range(20):  # 20 batches of one pair per intent
            pairs = [order.sample(by_intent[name], 2) for name in names]
            left = raw.encode_batch([a for a, _ in pairs])
            right = raw.encode_batch([b for _, b in pairs])
            tensors = [torch.tensor([e.ids for e in side]) for side in (left, right)]
            masks = [torch.tensor([e.attention_mask for e in side]) for side in (left, right)]
            a, b = embed(model, tensors[0], masks[0]), embed(model, tensors[1], masks[1])
            logits = a @ b.T / 0.05
            target = torch.arange(len(names))
            cross_entropy = torch.nn.functional.cross_entropy
            loss = (cross_entropy(logits, target) + cross_entropy(logits.T, target)) / 2  # both directions
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        if epoch % 10 == 9:
            print(f"epoch {epoch + 1}: loss {total:.4f}", flush=True)


def export(model, path: Path) -> None:
    import torch

    class Encoder(torch.nn.Module):  # keyword arguments: the model's forward() takes many
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    model.eval()
    ids = torch.ones((1, MAX_TOKENS), dtype=torch.int64)
    torch.onnx.export(Encoder(), (ids, torch.ones_like(ids)), str(path), input_names=["input_ids", "attention_mask"],
                      output_names=["last_hidden_state"], dynamic_axes={"input_ids": {0: "batch"},
                      "attention_mask": {0: "batch"}, "last_hidden_state": {0: "batch"}}, opset_version=17,
                      dynamo=False)  # fmt: skip


def embeddings(path: Path, raw, texts: list[str]) -> np.ndarray:
    """What the function answers for ``texts``: the ONNX model, mean pooling, L2 normalization."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path))
    encoded = raw.encode_batch(texts)
    ids = np.array([e.ids for e in encoded], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
    (hidden,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
    pooled = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def nearest_intent_share(model: Path, raw, train_by_intent: dict[str, list[str]],
                         held_out: list[tuple[str, str]]) -> float:  # fmt: skip
    """The share of held-out questions whose nearest training question (cosine) is of their intent."""
    known = [(q, name) for name, questions in train_by_intent.items() for q in questions]
    reference = embeddings(model, raw, [q for q, _ in known])
    asked = embeddings(model, raw, [q for q, _ in held_out])
    nearest = (asked @ reference.T).argmax(axis=1)
    return float(np.mean([known[i][1] == name for i, (_, name) in zip(nearest, held_out, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="the folder for model.onnx and tokenizer.json")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    train_by_intent, held_out = turns_by_intent()
    raw = tokenizer([q for questions in train_by_intent.values() for q in questions])
    model = encoder(raw.get_vocab_size())
    train(model, raw, train_by_intent, args.epochs)
    args.out.mkdir(parents=True, exist_ok=True)
    export(model, args.out / "model.onnx")
    raw.save(str(args.out / "tokenizer.json"))
    right = nearest_intent_share(args.out / "model.onnx", raw, train_by_intent, held_out)
    for name in ("model.onnx", "tokenizer.json"):
        print(f"{name}: sha256 {hashlib.sha256((args.out / name).read_bytes()).hexdigest()}")
    print(f"held-out questions whose nearest training question has their intent: {right:.4f}")


if __name__ == "__main__":
    main()
