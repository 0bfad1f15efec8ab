"""Entry point of the embed function: a small text encoder (Cloud Functions gen2 / Cloud Run / local).

Deploy with entry point ``handle``; ``modelfn serve functions/embed`` runs it locally. It answers
``POST /openai/v1/embeddings`` and ``POST /predict`` (``{"text": "..."}``), and batch jobs embed a
JSON Lines file of such lines (see docs, "Generative models").
"""

from modelfn.adapters.gcf import http_function

handle = http_function(__file__)
