"""ChunkPredictor: the rows of a chunk share one inference call, and a bad row does not cost its neighbours theirs."""

from __future__ import annotations

from typing import Any

from batch_cases import CHURN

from modelfn.batch.formats import BadRow, Row
from modelfn.batch.predict import ChunkPredictor, prediction_json
from modelfn.offline import ModelSource


class Counted:
    """The real loaded model, its inference calls counted (with the rows each took)."""

    def __init__(self, model: Any) -> None:
        self.model, self.calls = model, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def infer(self, inputs: dict[str, Any]) -> Any:
        self.calls.append(len(inputs["plan"]))
        return self.model.infer(inputs)


def churn_row(number: int, plan: str) -> Row:
    return Row(number, {"tenure": 12, "plan": plan, "contract": "one-year", "monthly": 30.5})


def test_one_unknown_category_in_a_chunk_costs_a_few_calls_not_one_per_row() -> None:
    predictor = ChunkPredictor(ModelSource.of(str(CHURN)).load())
    counted = Counted(predictor.model)
    predictor.model = counted  # type: ignore[assignment]
    rows = [churn_row(n, "gold" if n == 77 else "pro") for n in range(1, 257)]
    outcomes = predictor.outcomes(rows, "csv")
    calls = list(counted.calls)
    bad = [outcome for outcome in outcomes if isinstance(outcome, BadRow)]
    assert [(b.number, b.error) for b in bad] == [
        (77, "column 'plan': unknown category 'gold'; the model knows 'basic', 'family', 'pro'")
    ]
    alone = predictor.outcomes([churn_row(5, "pro")], "csv")[0]
    assert prediction_json(outcomes[4]) == prediction_json(alone)  # served as it would be on its own
    assert sum(calls) <= 3 * 256 and len(calls) <= 2 * 8 + 1, calls  # one per row was 257 calls
