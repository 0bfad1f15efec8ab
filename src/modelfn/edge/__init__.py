"""The edge runner: one model on a device with Python, ``onnxruntime`` and ``numpy``, nothing else.

``modelfn build FOLDER --target edge`` writes a folder holding the model (ORT format), its
contract and hooks, and this package with the few modules of modelfn it needs (no
functions-framework, no msgspec, no cloud SDK). In that folder::

    python -m modelfn.edge predict < request.json      # one answer on stdout
    python -m modelfn.edge serve --port 8080           # POST /predict and the OIP routes

Requests and answers are those of the function: the plain JSON body of ``POST /predict`` (through
the same Python hooks) and the Open Inference Protocol's JSON ``infer``.
"""
