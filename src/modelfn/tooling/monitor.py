"""``modelfn monitor``: a model's drift reference from its validation set; reports over every instance's summaries."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from modelfn.errors import ClientError, ContractError

if TYPE_CHECKING:
    from modelfn.monitoring.stats import FeatureDrift, Verdict
    from modelfn.monitoring.summary import Reference

#: ``--since`` durations: 90s, 30m, 12h, 7d.
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def compute_reference(folder: Path, data: Path | None = None) -> Reference:
    """The reference of ``folder``'s model: its features on ``data`` (or the contract's validation set)."""
    from modelfn.function import ModelFunction
    from modelfn.monitoring.features import Features, feature_hook, features
    from modelfn.settings import Settings
    from modelfn.tooling.heldout import requests_of, validation_tensors

    model = ModelFunction(folder, Settings(request_log=False)).model()
    contract = model.contract
    batches: list[dict[str, np.ndarray]] = []
    if data is not None and data.suffix.lower() in (".jsonl", ".ndjson") and contract.table is None:
        bodies = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif data is not None or contract.validation is not None:
        batches.append(validation_tensors(folder, contract, data)[0])
        bodies = []
    elif contract.validation_requests is not None:
        bodies = requests_of(folder, contract)[1 if contract.example is not None else 0 :]
    else:
        raise ContractError(
            f"{folder / 'modelfn.yaml'} names no validation set (`validation` or `validation_requests`); "
            "give the rows to compute the reference on with --data FILE"
        )
    for body in bodies:
        try:
            batches.append(model.preprocess(body))
        except ClientError:
            continue  # a body the model refuses says nothing of what it is asked
    if not batches:
        raise ContractError("no rows to compute the reference on")
    hook = feature_hook(folder, contract)
    found = [features(contract, inputs, model.infer(inputs), hook) for inputs in batches]
    categorical = {name: [v for f in found for v in f.categorical[name]] for name in found[0].categorical}
    rows = Features(found[0].names, np.vstack([f.matrix for f in found]), categorical)
    from modelfn.monitoring.summary import Reference

    return Reference.compute(contract.name, contract.version, rows)


def check_reference(folder: Path, model: Any) -> str:
    """The line ``modelfn check`` prints of the contract's drift reference; a ContractError if it cannot serve."""
    from modelfn.monitoring.drift import read_reference
    from modelfn.monitoring.features import feature_hook, features
    from modelfn.runtime.model import sample_inputs

    contract = model.contract
    name = contract.monitoring.reference
    reference = read_reference(folder / name)
    inputs = model.preprocess(contract.example) if contract.example is not None else sample_inputs(model)
    found = features(contract, inputs, model.infer(inputs), feature_hook(folder, contract))
    if found.names != reference.numeric_names or set(found.categorical) != set(reference.categorical_names):
        raise ContractError(f"{folder / name} was computed for other features than this model has now: "
                            f"run `modelfn monitor reference {folder}` again")  # fmt: skip
    if (reference.data["model"], reference.data["version"]) != (contract.name, contract.version):
        of = f"{reference.data['model']} v{reference.data['version']}"
        raise ContractError(f"{folder / name} is the reference of {of}: run `modelfn monitor reference {folder}` again")
    return (f"drift     {name}: {len(reference.numeric_names)} numeric and {len(reference.categorical_names)} "
            f"categorical features of {reference.data['rows']:,} rows")  # fmt: skip


class Report(NamedTuple):
    model: str
    version: str
    files: int
    instances: int
    rows: int
    start: float
    end: float
    scores: list[FeatureDrift]
    verdict: Verdict
    summary: dict[str, Any]

    @property
    def drifted(self) -> list[FeatureDrift]:
        return [s for s in self.scores if s.drifted]


def since_seconds(value: str | None) -> float | None:
    """``--since``'s start as a Unix time: a duration back from now (``12h``) or an ISO date and time."""
    if not value:
        return None
    match = _DURATION.fullmatch(value.strip())
    if match:
        return time.time() - float(match.group(1)) * _SECONDS[match.group(2)]
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ContractError(f"--since {value!r}: give a duration (90s, 30m, 12h, 7d) or an ISO time") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def stored_reference(store_uri: str, model: str, version: str | None) -> Reference:
    """The reference the function stored beside its summaries: of ``version``, or of the version last summarized."""
    from modelfn.monitoring.drift import REFERENCE_NAME
    from modelfn.monitoring.summary import Reference
    from modelfn.runtime.stores import join, open_store

    store, prefix = open_store(store_uri)
    base = join(prefix, model)
    if version is None:
        summarized = [key for key in store.list(base) if key.endswith(".json") and not key.endswith(REFERENCE_NAME)]
        if not summarized:
            raise ContractError(f"no drift summaries of {model} in {store_uri}: is MODELFN_MONITOR_STORE set on "
                                "the function, and monitoring.reference in its contract?")  # fmt: skip
        # <model>/<version>/<date>/<HHMMSS>-...: the newest by date and time
        newest = max(summarized, key=lambda key: key.split("/")[-2:])
        version = newest.removeprefix(base + "/").split("/")[0]
    key = join(base, version, REFERENCE_NAME)
    if store.stat(key) is None:
        raise ContractError(f"{store_uri}/{key} does not exist: no instance of {model} v{version} has flushed yet")
    return Reference(json.loads(store.read(key)))


def report(reference: Reference, store_uri: str, since: float | None = None) -> Report:
    """Every instance's summaries of the reference's version in ``store_uri`` since ``since``, merged and scored."""
    from modelfn.monitoring.drift import REFERENCE_NAME
    from modelfn.monitoring.stats import MIN_ROWS, score, verdict
    from modelfn.monitoring.summary import merge
    from modelfn.runtime.stores import join, open_store

    store, prefix = open_store(store_uri)
    model, version = reference.data["model"], reference.data["version"]
    summaries = []
    for key in sorted(store.list(join(prefix, model, version))):
        if not key.endswith(".json") or key.endswith(REFERENCE_NAME):
            continue
        summary = json.loads(store.read(key))
        if since is None or summary.get("end", 0) >= since:
            summaries.append(summary)
    if not summaries:
        period = " in that period" if since is not None else ""
        raise ContractError(f"no drift summaries of {model} v{version} in {store_uri}{period}")
    merged = merge(summaries)
    if merged["rows"] < MIN_ROWS:
        raise ContractError(f"{merged['rows']} rows in the period; a report needs at least {MIN_ROWS}")
    scores = score(reference, merged)
    return Report(model, version, len(summaries), len({s.get("instance") for s in summaries}), merged["rows"],
                  min(s.get("start", 0) for s in summaries), max(s.get("end", 0) for s in summaries),
                  scores, verdict(scores), merged)  # fmt: skip


def table(result: Report, *, every: bool = False) -> str:
    """The report as text: a line per drifted feature (every feature with ``every``), then the verdict."""
    from modelfn.monitoring.stats import DRIFT_SHARE

    lines = [f"{result.model} v{result.version}: {result.rows:,} rows from {result.instances} instance(s), "
             f"{result.files} summaries, {_when(result.start)} to {_when(result.end)}", "",
             f"{'feature':<28} {'method':<22} {'score':>8} {'threshold':>9}  drift"]  # fmt: skip
    for each in sorted(result.scores, key=lambda s: -s.score / s.threshold):
        if every or each.drifted:
            lines.append(f"{each.name:<28} {each.method:<22} {each.score:>8.3f} {each.threshold:>9.2f}  "
                         f"{'yes' if each.drifted else 'no'}")  # fmt: skip
    inputs = [s for s in result.scores if not s.output]
    judged = result.verdict
    drifted = sum(s.drifted for s in inputs)
    lines += ["", f"{drifted} of {len(inputs)} input features drifted (share {judged.share:.2f}; "
              f"dataset drift at {DRIFT_SHARE:.2f}: {'yes' if judged.dataset else 'no'}); predicted classes drifted: "
              f"{', '.join(judged.outputs) or 'none'}",
              "DRIFT" if judged.drift else "no drift"]  # fmt: skip
    return "\n".join(lines)


def _when(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(moment))
