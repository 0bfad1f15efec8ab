"""Entry point of the churn function (Cloud Functions gen2 / Cloud Run / local).

Deploy with entry point ``handle``; ``modelfn serve functions/churn`` runs it locally.
"""

from modelfn.adapters.gcf import http_function

handle = http_function(__file__)
