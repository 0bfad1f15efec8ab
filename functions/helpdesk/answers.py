"""What the helpdesk says for each intent, in the model's label order (the order of ``intents.yaml``).

The texts live in ``answers.json``, which the Python hooks (here) and the browser's hooks
(``hooks.js``) both read, so the two cannot drift apart. Short enough to be spoken: Alexa reads
these aloud.
"""

import json
from pathlib import Path

_DOCUMENT = json.loads((Path(__file__).resolve().parent / "answers.json").read_text(encoding="utf-8"))

#: Below this probability the helpdesk says it is not sure instead of answering.
MIN_CONFIDENCE: float = _DOCUMENT["min_confidence"]
#: What it says then.
FALLBACK: str = _DOCUMENT["fallback"]
ANSWERS: dict[str, str] = _DOCUMENT["answers"]
