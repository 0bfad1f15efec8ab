"""``modelfn init`` on the folder ONNX Runtime GenAI's model builder writes: a generative model's function.

The folder is copied whole under ``model/``, every file pinned by its sha256 (the model file the
config names as ``artifact.uri``, the others in ``artifact.files``), and the contract gets
``framework: genai``, the text-in, text-out tensors, and ``generation:`` limits read from the config
(the prompt may use at most half the context) with the chat template where the folder has one. No
hooks: ``POST /predict`` takes ``{"text_input": ["a prompt"]}`` and the OpenAI-compatible routes
build the prompt from chat messages.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from modelfn.contract import CONTRACT_FILE
from modelfn.errors import ContractError
from modelfn.runtime.digests import hash_path

MAIN = '''"""Entry point of {name}, a generative model (Cloud Functions gen2 / Cloud Run / local: modelfn serve)."""

from modelfn.adapters.gcf import http_function

handle = http_function(__file__)
'''
#: Files of a model builder's folder that the engine or the chat template may read.
TEMPLATES = ("chat_template.jinja",)


def init_generative(folder: Path, name: str, out: Path, *, version: str = "1", description: str = "") -> Path:
    """Write a function folder for the GenAI model ``folder`` at ``out`` (a new folder)."""
    try:
        config = json.loads((folder / "genai_config.json").read_text())
        model = config["model"]
        model_file = model["decoder"]["filename"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ContractError(f"{folder}/genai_config.json is not ONNX Runtime GenAI's config: {exc}") from None
    if not isinstance(model_file, str) or "/" in model_file or not (folder / model_file).is_file():
        raise ContractError(
            f"{folder}: genai_config.json names the model file {model_file!r}, which is not in the folder"
        )
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    context = int(model.get("context_length") or 2048)
    generation: dict[str, Any] = {"max_prompt_tokens": max(1, context // 2), "max_tokens": min(256, context // 2)}
    if (folder / TEMPLATES[0]).is_file():
        generation["chat_template"] = TEMPLATES[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (staged / "model").mkdir()
        pins = {}
        for path in files:
            shutil.copy2(path, staged / "model" / path.name)
            pins[path.name] = hash_path(staged / "model" / path.name)[0]
        contract = {
            "name": name,
            "version": version,
            "framework": "genai",
            "artifact": {"uri": f"model/{model_file}", "sha256": pins.pop(model_file), "files": pins},
            "inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [-1], "description": "A prompt."}],
            "outputs": [{"name": "text_output", "datatype": "BYTES", "shape": [-1], "description": "The answer."}],
            "generation": generation,
            "example": {"text_input": ["Hello"]},
            "docs": {"description": description, "metrics": {}, "training_data": "", "limitations": []},
        }
        header = (
            f"# Written by modelfn init from {folder.name}/ (ONNX Runtime GenAI). Set the generation limits\n"
            '# and fill in the docs block; see the docs, "Generative models".\n'
        )
        (staged / CONTRACT_FILE).write_text(header + yaml.safe_dump(contract, sort_keys=False, width=100))
        (staged / "main.py").write_text(MAIN.format(name=name))
        staged.rename(out)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return out
