"""A storage event's large file goes to a distributed job instead of being predicted in the function.

One function instance has minutes and one machine's memory; a file of ``MODELFN_BATCH_HANDOFF_BYTES``
or more is handed to the Beam pipeline (:mod:`modelfn.beam.pipeline`), which writes the same
``<name>.predictions.jsonl``, ``<name>.errors.jsonl`` and ``<name>.summary.json`` as the function
would have, on as many workers as the file needs:

- ``dataflow``: a Dataflow job from the function's flex template (``modelfn build --target dataflow``),
  launched through Dataflow's REST API as the function's service account;
- ``local``: the same pipeline in a child process of this host (development, single hosts).

Deliveries are at least once, so each hand-off is claimed first: ``<name>.handoff.json`` is
created beside the results only if absent (or replaced only if it records another generation,
model version or a failed launch). A second delivery of the same event finds the claim and
launches nothing; the job's summary, written last, makes every later one a duplicate too.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from modelfn.errors import ModelNotReady, ObjectNotFound, PreconditionFailed
from modelfn.runtime.stores import ABSENT, Store, join
from modelfn.settings import Settings

log = logging.getLogger("modelfn")
CLAIM_SUFFIX = ".handoff.json"
DATAFLOW_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def job_name(model: str, uri: str, generation: str, version: str) -> str:
    """A Dataflow job name for this input generation and model version: the same for every delivery."""
    digest = hashlib.sha256(f"{uri}\n{generation}\n{version}".encode()).hexdigest()[:16]
    stem = re.sub(r"[^a-z0-9-]", "-", f"modelfn-{model}".lower()).strip("-")[:40]
    return f"{stem}-{digest}"


class Handoff:
    """Claims and launches the distributed job of one input (see the module's docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def wanted(self, size: int) -> bool:
        return bool(self.settings.batch_handoff) and size >= self.settings.batch_handoff_bytes

    def launch(
        self,
        *,
        source: str,
        name: str,
        generation: str,
        model: str,
        version: str,
        output: tuple[Store, str],
        reference: str = "",
        folder: Path | None = None,
    ) -> dict[str, Any]:
        """Claim the input's hand-off and launch its job; a claimed one is a duplicate.

        ``reference``: the registry version the function serves (``<registry>/<name>/<version>``), which
        the job runs with the function's hooks; empty for the folder's own model.
        """
        store, prefix = output
        key = join(prefix, name) + CLAIM_SUFFIX
        job = job_name(model, source, generation, version)
        record = {"input": source, "generation": generation, "model": model, "version": version, "job": job}
        expect = ABSENT
        try:
            claimed = orjson.loads(store.read(key))
            if all(claimed.get(k) == v for k, v in record.items() if k != "job") and not claimed.get("failed"):
                log.info("%s (generation %s) already handed off to %s", source, generation, claimed.get("job"))
                return {"handed_off": claimed.get("job"), "input": source, "duplicate": True}
            info = store.stat(key)
            expect = info.token if info is not None else ABSENT
        except ObjectNotFound:
            pass
        except orjson.JSONDecodeError:
            info = store.stat(key)
            expect = info.token if info is not None else ABSENT
        try:
            claim = store.write(key, orjson.dumps({**record, "launched": time.time()}), expect=expect)
        except PreconditionFailed:  # another delivery claimed it a moment ago
            return {"handed_off": job, "input": source, "duplicate": True}
        engine = self.settings.batch_handoff
        try:
            parameters = {"input": source, "output": f"{store.uri}/{prefix}".rstrip("/"), "name": name}
            if reference:
                parameters["model"] = reference
            if self.settings.batch_database:
                parameters["database"] = self.settings.batch_database
            launched = self._dataflow(job, parameters) if engine == "dataflow" else self._local(job, parameters, folder)
        except Exception as exc:
            # Leave the claim marked failed so the platform's redelivery may launch again.
            store.write(key, orjson.dumps({**record, "failed": str(exc)[:500]}), expect=claim.token)
            log.error("hand-off of %s to %s failed: %s", source, engine, exc)
            raise ModelNotReady(f"the {engine} job for {source} could not be launched; retry") from exc
        log.info("%s (generation %s, %d bytes or more) handed off to %s job %s",
                 source, generation, self.settings.batch_handoff_bytes, engine, launched)  # fmt: skip
        return {"handed_off": launched, "engine": engine, "input": source}

    def _local(self, job: str, parameters: dict[str, str], folder: Path | None) -> str:
        """The pipeline in a child process that outlives this request (its log beside the cache)."""
        log_dir = Path(self.settings.cache_dir) / "handoff"
        log_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "modelfn.beam.template", f"--function={folder}",
                   *(f"--{key}={value}" for key, value in parameters.items())]  # fmt: skip
        with open(log_dir / f"{job}.log", "ab") as output:
            child = subprocess.Popen(command, stdout=output, stderr=output, stdin=subprocess.DEVNULL,
                                     start_new_session=True, env=os.environ.copy())  # fmt: skip
        return f"{job} (pid {child.pid})"

    def _dataflow(self, job: str, parameters: dict[str, str]) -> str:
        """``flexTemplates:launch``: the template's pipeline with this input's parameters."""
        settings = self.settings
        environment = orjson.loads(settings.dataflow_environment or "{}")
        body = {"launchParameter": {"jobName": job, "containerSpecGcsPath": settings.dataflow_template,
                                    "parameters": parameters, "environment": environment}}  # fmt: skip
        url = (f"{settings.dataflow_endpoint.rstrip('/')}/v1b3/projects/{settings.dataflow_project}"
               f"/locations/{settings.dataflow_region}/flexTemplates:launch")  # fmt: skip
        response = _session(settings.dataflow_endpoint).post(url, json=body, timeout=60)
        if response.status_code == 409:  # a job of this name already runs: a racing delivery launched it
            return job
        if response.status_code >= 400:
            raise RuntimeError(f"Dataflow answered {response.status_code}: {response.text[:300]}")
        return str(response.json().get("job", {}).get("id", job))


def _session(endpoint: str) -> Any:
    """An authorized session for Google's API; none for another address (a test's stand-in server)."""
    import requests

    if not endpoint.startswith("https://dataflow.googleapis.com"):
        return requests.Session()
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(scopes=[DATAFLOW_SCOPE])
    return AuthorizedSession(credentials)
