"""Entry point of the chat function: a small language model that writes answers about modelfn.

Deploy with entry point ``handle``; ``modelfn serve functions/chat`` runs it locally. It answers the
OpenAI-compatible routes under ``/openai/v1`` (streamed with ``stream: true``), ``POST /predict``
(``{"text": "your question"}``) and the Open Inference Protocol (see docs, "Generative models").
"""

from modelfn.adapters.gcf import http_function

handle = http_function(__file__)
