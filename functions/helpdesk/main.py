"""Entry point of the helpdesk function: a chatbot about modelfn (Cloud Functions gen2 / Cloud Run / local).

Deploy with entry point ``handle``; ``modelfn serve functions/helpdesk`` runs it locally. Besides
``POST /predict`` it answers an Alexa skill at ``/alexa``, Dialogflow ES and CX at ``/dialogflow``
and people at ``/`` (see README, "Conversations and the web page").
"""

from modelfn.adapters.gcf import http_function

handle = http_function(__file__)
