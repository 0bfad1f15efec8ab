"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService``), on the REST data plane.

Each call is translated into the REST request that says the same (binary tensor data for the
tensors) and answered by :func:`modelfn.adapters.dispatch.handle_request`: the same contract checks,
limits, admission queue, credentials, traffic policies, metrics and logs as REST, and the same
words in errors, mapped to gRPC status codes. Run it with ``modelfn serve FOLDER --grpc`` or, in a
Cloud Run image, ``MODELFN_SERVE=grpc`` (see :mod:`modelfn.adapters.grpc_oip.server`).
"""
