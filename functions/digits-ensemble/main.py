"""Entry point of the digits-ensemble function: a pipeline and the three models it runs.

Deploy with entry point ``handle``; ``modelfn serve functions/digits-ensemble`` runs it locally.
Each model answers on its own name too: /v2/models/{ensemble,pca,logreg,mlp}/infer.
"""

from modelfn.adapters.gcf import http_function

handle = http_function(__file__, models=["ensemble", "pca", "logreg", "mlp"])
