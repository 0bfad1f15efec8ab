"""Entry point of the digits CNN served natively by PyTorch (Cloud Run image / local).

``modelfn serve functions/digits-torch`` runs it locally; ``modelfn convert`` turns it into ONNX.
"""

from modelfn.adapters.gcf import http_function

handle = http_function(__file__)
