# Cloud Run image of one function folder; `modelfn build functions/<name> --target cloudrun` copies
# this file into the build context beside the sources and the pinned requirements.txt.
# The base is a build argument, so a build without a registry can name its own (the tests build on
# a Debian bookworm base made offline): docker build --build-arg BASE_IMAGE=... .
ARG BASE_IMAGE=python:{{python}}-slim
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Dependencies first: a change to the model or the hooks does not reinstall them.
COPY requirements.txt .
# The file pins the whole closure, so nothing unpinned comes in with --no-deps.
RUN pip install --no-deps -r requirements.txt
COPY . .
# Byte-compiled at build time, so a cold start does not compile modelfn and the hooks.
RUN python -m compileall -q /app

# Not root: the function reads its files and writes nothing here.
USER 65532:65532
# A writable home: ONNX Runtime keeps a telemetry id there, and Cloud Run's /tmp is in memory.
ENV PORT=8080 HOME=/tmp
CMD ["sh", "-c", "exec python -m modelfn.adapters.server --target handle --source main.py --port ${PORT}"]
