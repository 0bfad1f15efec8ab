"""The held-out data a contract names, for checks that compare two ways of running a model.

``validation`` is an ``.npz`` of input tensors (and optional ``labels``), or for a table a CSV
with a header (or JSON Lines of row objects) whose ``label`` column, where there is one, holds the
labels; ``validation_requests`` is JSON Lines of request bodies. A check of the hooks needs the
bodies; a check of a converted or quantized model needs tensors, which the pre hook makes of the
bodies when there is no ``.npz``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelfn.errors import ClientError, ContractError

if TYPE_CHECKING:
    from modelfn.contract import Contract
    from modelfn.runtime.model import LoadedModel


def requests_of(folder: Path, contract: Contract) -> list[Any]:
    """The example, then each line of ``validation_requests``."""
    bodies = [] if contract.example is None else [contract.example]
    if contract.validation_requests is not None:
        path = folder / contract.validation_requests
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ContractError(f"{path}: cannot read validation_requests ({exc.strerror})") from exc
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    bodies.append(json.loads(line))
                except ValueError as exc:
                    raise ContractError(f"{path}:{number}: not JSON ({exc})") from exc
    return bodies


def validation_tensors(
    folder: Path, contract: Contract, path: Path | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """``validation``'s input tensors (by input name) and labels; ``path`` instead of the contract's file."""
    path = path if path is not None else folder / str(contract.validation)
    if path.suffix.lower() in (".csv", ".jsonl", ".ndjson"):
        return table_rows(path, contract)
    with np.load(path) as data:
        missing = [spec.name for spec in contract.inputs if spec.name not in data]
        if missing:
            raise ContractError(f"{path}: no arrays for inputs {missing}")
        inputs = {spec.name: data[spec.name] for spec in contract.inputs}
        labels = data["labels"] if "labels" in data.files else None
    return inputs, labels


def verification_inputs(
    folder: Path, contract: Contract, model: LoadedModel
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Tensors to compare two models on: ``validation``, or what the pre hook makes of ``validation_requests``."""
    if contract.validation is not None:
        return validation_tensors(folder, contract)
    if contract.validation_requests is None or contract.hooks.pre is None:
        raise ContractError(
            f"{folder / 'modelfn.yaml'}: field `validation` (or `validation_requests` with a pre hook) "
            "is needed to verify the model against the original"
        )
    batches: list[dict[str, np.ndarray]] = []
    for body in requests_of(folder, contract):
        try:
            batches.append(model.preprocess(body))
        except ClientError:
            continue  # a body the hook refuses has no tensors to compare
    if not batches:
        raise ContractError(f"{folder / str(contract.validation_requests)}: the pre hook refuses every request")
    return {name: np.concatenate([batch[name] for batch in batches]) for name in batches[0]}, None


#: The column of a table's validation rows that holds each row's label (left out of the inputs).
LABEL_COLUMN = "label"


def table_rows(path: Path, contract: Contract) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """A table's rows from a CSV with a header or JSON Lines of row objects: its columns, and its labels."""
    import csv

    from modelfn.batch.formats import cell_value
    from modelfn.errors import InvalidInput
    from modelfn.table import columns_of_rows

    if contract.table is None:
        raise ContractError(f"{path}: rows by column are for a table (`table:`); give an .npz of input tensors")
    specs = {spec.name: spec for spec in contract.inputs}
    rows: list[dict[str, Any]] = []
    labels: list[Any] = []
    try:
        with path.open(newline="", encoding="utf-8") as file:
            if path.suffix.lower() == ".csv":
                records: Any = csv.DictReader(file)
                parsed = ({name: cell_value(cell, specs[name]) if name in specs else cell
                           for name, cell in record.items()} for record in records)  # fmt: skip
            else:
                parsed = (json.loads(line) for line in file if line.strip())
            for number, record in enumerate(parsed, 1):
                if not isinstance(record, dict):
                    raise ContractError(f"{path}: row {number} is not an object keyed by column")
                label = record.pop(LABEL_COLUMN, None)
                rows.append({name: value for name, value in record.items() if name in specs})
                labels.append(label)
    except (OSError, ValueError) as exc:
        raise ContractError(f"{path}: cannot read the validation rows: {exc}") from None
    except InvalidInput as exc:
        raise ContractError(f"{path}: {exc.message}") from None
    if not rows:
        raise ContractError(f"{path}: no rows to verify on")
    try:
        columns = columns_of_rows(contract, rows, str(path))
    except InvalidInput as exc:
        raise ContractError(f"{path}: {exc.message}") from None
    known = None if any(label in (None, "") for label in labels) else np.array([int(float(v)) for v in labels])
    return columns, known
