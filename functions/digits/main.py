"""Entry points of the digits function (Cloud Functions gen2 / Cloud Run / local).

Deploy with entry point ``handle`` for HTTP; ``modelfn serve functions/digits`` runs it locally.
Deploy with entry point ``handle_event`` on a storage trigger for batch prediction: a file that
lands under ``incoming/`` gets its predictions under ``predictions/`` (see README, "Batch prediction").
"""

from modelfn.adapters.gcf import event_function, http_function

handle = http_function(__file__)
handle_event = event_function(__file__)
