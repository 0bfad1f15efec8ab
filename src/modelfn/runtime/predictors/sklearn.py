"""scikit-learn predictor (``pip install 'modelfn[sklearn]'``).

Outputs follow the estimator's API: an output named ``label`` comes from
``predict``, one named ``probabilities`` from ``predict_proba``, each cast to
the contract's datatype so the same contract fits the ONNX conversion.

Loading: ``.skops`` files load without running code, trusting only skops'
safe defaults plus the contract's ``artifact.trusted_types``. Pickle and joblib
files run code when loaded; they reach this module only as bytes whose sha256
the contract pins and that matched it (the contract refuses them unpinned).

A value the contract admitted can still be one the estimator cannot take (``"twelve"`` for a number,
a category its encoder never saw): scikit-learn raises ``ValueError`` or ``TypeError`` from its input
checks, and that is the caller's fault, answered 400 (:func:`refuses_the_input`). Any other error is
the model's, answered 500.

A tabular contract (``table:``) declares one input per column. The estimator then receives a pandas
``DataFrame`` with the columns in the order it was fitted on (``as: dataframe``), or a 2-D array in
the contract's order (``as: arrays``). The categories each encoder of the pipeline knows are read once
at load, so a value the model never saw is a 400 naming the column and the categories it knows
(:mod:`modelfn.runtime.predictors.categories`), not scikit-learn's message about a column index.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from modelfn.datatypes import NUMPY_DTYPES
from modelfn.errors import ContractError, InvalidInput
from modelfn.runtime.predictors import require

if TYPE_CHECKING:
    import numpy as np

    from modelfn.contract import Contract

METHODS = {"label": "predict", "probabilities": "predict_proba"}
#: scikit-learn's modules that check and convert what an estimator is given (numbers, feature counts
#: and names, categories): an error raised under one of them is about the input, not the model.
INPUT_CHECKS = (
    "sklearn/utils/validation.py",
    "sklearn/utils/_array_api.py",
    "sklearn/utils/_encode.py",
    "sklearn/preprocessing/_encoders.py",
)
#: The longest estimator message a caller is shown (they quote the caller's own values).
MESSAGE_CHARS = 300


class SklearnPredictor:
    def __init__(
        self, estimator: Any, input_name: str, output_types: dict[str, str], table: TableForm | None = None
    ) -> None:
        self._estimator = estimator
        self._input = input_name
        self._types = output_types
        self._table = table
        # Asked for both label and probabilities, a Pipeline would transform the rows twice (once per
        # method, the larger part of the time for a ColumnTransformer): its steps run once, then its
        # final estimator's two methods, as Pipeline.predict and predict_proba themselves do.
        self._shared_steps, self._final = _split_pipeline(estimator)

    @property
    def estimator(self) -> Any:
        """The fitted estimator (for conversion tooling)."""
        return self._estimator

    @classmethod
    def from_bytes(cls, data: bytes, contract: Contract) -> SklearnPredictor:
        require("sklearn", "sklearn")
        if len(contract.inputs) != 1 and contract.table is None:
            raise ContractError(
                "field `inputs`: a scikit-learn model takes exactly one input (its feature matrix), "
                "or one per column with `table:` (a pipeline fitted on a DataFrame)"
            )
        estimator = _deserialize(data, contract)
        if contract.table is None:
            _refuse_a_dataframe_model(estimator)
        types = {}
        for index, spec in enumerate(contract.outputs):
            method = METHODS.get(spec.name)
            if method is None:
                raise ContractError(
                    f"field `outputs[{index}].name`: scikit-learn outputs are named "
                    f"'label' (predict) or 'probabilities' (predict_proba), got {spec.name!r}"
                )
            if not callable(getattr(estimator, method, None)):
                raise ContractError(f"field `outputs[{index}]`: the estimator has no {method}()")
            types[spec.name] = NUMPY_DTYPES[spec.datatype]
        table = None if contract.table is None else TableForm.of(estimator, contract)
        return cls(estimator, contract.inputs[0].name, types, table)

    def predict(self, inputs: Mapping[str, np.ndarray], output_names: Sequence[str]) -> dict[str, np.ndarray]:
        import numpy as np

        features = inputs[self._input] if self._table is None else self._table.features(inputs)
        try:
            estimator = self._estimator
            if len(output_names) > 1 and self._shared_steps is not None:
                features, estimator = self._shared_steps.transform(features), self._final
            # C order: an estimator may answer a transposed view (LightGBM's probabilities), which
            # astype keeps, and the JSON encoder serializes contiguous arrays only.
            return {
                name: np.ascontiguousarray(getattr(estimator, METHODS[name])(features), dtype=self._types[name])
                for name in output_names
            }
        except (ValueError, TypeError) as exc:
            if not refuses_the_input(exc):
                raise
            message = str(exc)[:MESSAGE_CHARS]
            subject = f"input {self._input!r}" if self._table is None else "the rows"
            raise InvalidInput(f"{subject}: the model cannot take this value: {message}") from exc


def _split_pipeline(estimator: Any) -> tuple[Any, Any]:
    """A Pipeline's transforming steps (one Pipeline) and its final estimator, or ``(None, None)``."""
    from sklearn.pipeline import Pipeline

    if not isinstance(estimator, Pipeline) or len(estimator.steps) < 2 or estimator.steps[-1][1] == "passthrough":
        return None, None
    return estimator[:-1], estimator.steps[-1][1]


class TableForm:
    """How a tabular contract's columns reach the estimator, and the categories its encoders know."""

    def __init__(self, columns: list[str], as_dataframe: bool, known: dict[str, frozenset[Any]]) -> None:
        self.columns = columns
        self.as_dataframe = as_dataframe
        self.known = known

    @classmethod
    def of(cls, estimator: Any, contract: Contract) -> TableForm:
        from modelfn.runtime.predictors.categories import known_categories
        from modelfn.table import column_order

        assert contract.table is not None
        as_dataframe = contract.table.pass_as == "dataframe"
        if as_dataframe:
            require("pandas", "sklearn")
        columns = column_order(contract, getattr(estimator, "feature_names_in_", None) if as_dataframe else None)
        # A column the contract lists under table.categories is checked against that list for every model
        # (LoadedModel.infer): the encoders' own categories add the columns it leaves out, once each.
        known = {name: values for name, values in known_categories(estimator, columns).items()
                 if name not in contract.table.categories}  # fmt: skip
        return cls(columns, as_dataframe, known)

    def features(self, inputs: Mapping[str, np.ndarray]) -> Any:
        from modelfn.table import check_categories, dataframe

        for name, known in self.known.items():
            check_categories(name, inputs[name], known)
        if self.as_dataframe:
            return dataframe(self.columns, inputs)
        import numpy as np

        return np.column_stack([inputs[name].reshape(-1) for name in self.columns])


def _refuse_a_dataframe_model(estimator: Any) -> None:
    """A pipeline that picks its columns by name takes a DataFrame only: say so at load, not at the warm-up."""
    from modelfn.runtime.predictors.categories import selects_columns_by_name

    columns = getattr(estimator, "feature_names_in_", None)
    if columns is not None and selects_columns_by_name(estimator):
        raise ContractError(
            f"field `inputs`: the model was fitted on a DataFrame with the columns {[str(c) for c in columns]} and "
            "picks them by name; declare each as an input under `table:` (modelfn init MODEL --example row.json "
            "writes that contract)"
        )


def refuses_the_input(error: BaseException) -> bool:
    """Whether scikit-learn raised ``error`` while checking or converting its input (see :data:`INPUT_CHECKS`)."""
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_filename.replace(os.sep, "/").endswith(INPUT_CHECKS):
            return True
        frame = frame.tb_next
    return False


def _deserialize(data: bytes, contract: Contract) -> Any:
    artifact = contract.verified_artifact()
    fmt = artifact.format
    if fmt == "skops":
        require("skops", "sklearn")
        import skops.io

        untrusted = [t for t in skops.io.get_untrusted_types(data=data) if t not in artifact.trusted_types]
        if untrusted:
            raise ContractError(
                f"field `artifact.trusted_types`: the skops file contains types that are not trusted by default: "
                f"{untrusted}; list them there if you built this file and trust them"
            )
        return skops.io.loads(data, trusted=list(artifact.trusted_types) or None)
    # Pickle/joblib: the bytes were verified against the pinned sha256 before reaching here.
    if fmt == "joblib":
        import joblib

        return joblib.load(io.BytesIO(data))
    import pickle

    return pickle.loads(data)
