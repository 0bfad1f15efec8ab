"""Train the chat model: a small decoder-only transformer that writes the helpdesk's answers.

    python functions/chat/train.py [--out DIR] [--epochs N]

The text is the repository's own: the helpdesk's questions by intent (``functions/helpdesk/intents.yaml``)
and its answers (``answers.json``). Each question becomes a chat turn, the user's question and the
assistant's answer, and the model learns to write the answer token by token. It is split as the
helpdesk classifier's data is (the same seed, stratified by intent, 75/25), so the held-out questions
are the same ones and the two figures compare: the share of held-out questions whose generated
answer is the intended one, word for word.

Nothing is downloaded. The steps, each from a well-kept library:

1. a byte-level BPE tokenizer trained on that text (``tokenizers``), saved with its chat template;
2. a Llama-architecture model of 2 layers, 128 wide (``transformers``), trained with PyTorch on one
   thread, seeded: the same machine and versions give the same weights;
3. ONNX Runtime GenAI's model builder turns the saved model into the folder modelfn serves
   (``model/``: ``model.onnx``, its weights, ``genai_config.json``, the tokenizer files);
4. the held-out questions are answered by that folder with the engine modelfn serves it with, and
   the figure printed is that one.

Needs ``pip install 'modelfn[genai,train-chat]'`` (torch, transformers, tokenizers and the builder's
onnx packages; none of them is needed to serve the model).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
HELPDESK = HERE.parent / "helpdesk"
SEED = 20261124  # the helpdesk classifier's: the same held-out questions
SPECIAL = ["<|pad|>", "<|bos|>", "<|eos|>", "<|user|>", "<|assistant|>"]
TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}<|user|>{{ message['content'] }}"
    "{% elif message['role'] == 'assistant' %}<|assistant|>{{ message['content'] }}<|eos|>{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CONTEXT = 2048  # positions the model has; its answers are far shorter, the limits are the contract's


def turns_by_intent() -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """``(training questions by intent, held-out (question, intent))``, split as :func:`turns` splits them."""
    import yaml
    from sklearn.model_selection import train_test_split

    intents = yaml.safe_load((HELPDESK / "intents.yaml").read_text())
    texts = [text for name in intents for text in intents[name]]
    labels = [name for name in intents for _ in intents[name]]
    x_train, x_test, y_train, y_test = train_test_split(
        texts, labels, test_size=0.25, random_state=SEED, stratify=labels
    )
    by_intent: dict[str, list[str]] = {}
    for question, name in zip(x_train, y_train, strict=True):
        by_intent.setdefault(name, []).append(question)
    return by_intent, list(zip(x_test, y_test, strict=True))


def turns() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(train, held out)``: (question, answer) pairs, split as the helpdesk classifier splits them."""
    import yaml
    from sklearn.model_selection import train_test_split

    intents = yaml.safe_load((HELPDESK / "intents.yaml").read_text())
    answers = json.loads((HELPDESK / "answers.json").read_text())["answers"]
    texts = [text for name in intents for text in intents[name]]
    labels = [name for name in intents for _ in intents[name]]
    x_train, x_test, y_train, y_test = train_test_split(
        texts, labels, test_size=0.25, random_state=SEED, stratify=labels
    )
    train = [(q, answers[y]) for q, y in zip(x_train, y_train, strict=True)]
    return train, [(q, answers[y]) for q, y in zip(x_test, y_test, strict=True)]


def tokenizer(corpus: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=1024, special_tokens=SPECIAL, initial_alphabet=alphabet, show_progress=False
    )
    raw.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>")
    fast.chat_template = TEMPLATE
    return raw, fast


def train(pairs: list[tuple[str, str]], raw, epochs: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    torch.set_num_threads(1)  # one thread: the same sums in the same order, the same weights every run
    torch.use_deterministic_algorithms(True)
    config = LlamaConfig(
        vocab_size=raw.get_vocab_size(), hidden_size=128, intermediate_size=384, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=CONTEXT,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    rows = []
    for question, answer in pairs:  # the loss is on the answer only: the question is given
        prompt = raw.encode("<|user|>" + question + "<|assistant|>").ids
        reply = raw.encode(answer + "<|eos|>").ids
        rows.append((prompt + reply, [-100] * len(prompt) + reply))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    order = random.Random(SEED)
    for epoch in range(epochs):
        order.shuffle(rows)
        total = 0.0
        for start in range(0, len(rows), 32):
            batch = rows[start : start + 32]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.tensor([x + [0] * (width - len(x)) for x, _ in batch])
            labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch])
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in batch])
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        if epoch % 10 == 9:
            print(f"epoch {epoch + 1}: loss {total:.4f}", flush=True)
    return model


def build(saved: Path, out: Path) -> None:
    """ONNX Runtime GenAI's model builder, on the model saved here (offline: ``-m`` is a local folder)."""
    command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-m", str(saved), "-i", str(saved),
               "-o", str(out), "-p", "fp32", "-e", "cpu"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"the model builder failed:\n{result.stderr[-3000:]}")


def heldout_score(folder: Path, pairs: list[tuple[str, str]]) -> float:
    """The share of ``pairs`` whose answer, generated greedily by the shipped folder, is the intended one."""
    import onnxruntime_genai as og

    model = og.Model(str(folder))
    tokens = og.Tokenizer(model)
    right = 0
    for question, answer in pairs:
        prompt = tokens.encode("<|user|>" + question + "<|assistant|>")
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=CONTEXT, do_sample=False)
        generator = og.Generator(model, params)
        generator.append_tokens(prompt)
        while not generator.is_done():
            generator.generate_next_token()
        written = tokens.decode(generator.get_sequence(0)[len(prompt) :])
        right += written.strip() == answer
    return right / len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "model", help="the model folder to write")
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    train_pairs, held_out = turns()
    raw, fast = tokenizer([q for q, _ in train_pairs] + sorted({a for _, a in train_pairs}))
    model = train(train_pairs, raw, args.epochs)
    with tempfile.TemporaryDirectory() as scratch:
        saved, built = Path(scratch) / "saved", Path(scratch) / "built"
        model.save_pretrained(saved)
        fast.save_pretrained(saved)
        build(saved, built)
        score = heldout_score(built, held_out)
        shutil.rmtree(args.out, ignore_errors=True)
        shutil.copytree(built, args.out)
    if args.out == HERE / "model":  # the function's own model: its held-out questions go beside it
        (HERE / "heldout.jsonl").write_text("".join(json.dumps({"text": q}) + "\n" for q, _ in held_out))
    for path in sorted(args.out.iterdir()):
        print(f"{path.name}: sha256 {hashlib.sha256(path.read_bytes()).hexdigest()}")
    print(f"questions: {len(train_pairs)} for training, {len(held_out)} held out")
    print(f"held-out answers written word for word: {score:.4f}")


if __name__ == "__main__":
    main()
