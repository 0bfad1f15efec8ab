"""Batch prediction on Apache Beam (Dataflow, Flink, Spark, or locally) with a modelfn model.

- :func:`model_handler`: a ``ModelHandler`` for Beam's ``RunInference``, from a function folder or
  a registry reference: the function's checks, digest verification, predictors and hooks;
- :class:`Predict`: ``RunInference`` with bad elements routed to a dead-letter output;
- :mod:`modelfn.beam.pipeline`: ``modelfn batch ... --runner beam``, the single-machine job's files
  on any Beam runner.

Needs ``pip install 'modelfn[beam]'`` (``apache-beam[gcp]`` on Dataflow).
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from modelfn.beam.handler import BatchRow, ModelfnHandler, RowError, model_handler

__all__ = ["BatchRow", "ModelfnHandler", "Predict", "RowError", "model_handler"]


class Predict(beam.PTransform):
    """``RunInference(handler)`` split in two: ``result.predictions`` and ``result.errors``.

    Both hold what ``RunInference`` gives: ``PredictionResult`` values, or ``(key, PredictionResult)``
    from a ``KeyedModelHandler(model_handler(...))``; an error's ``inference`` is a :class:`RowError`.
    """

    PREDICTIONS, ERRORS = "predictions", "errors"

    def __init__(self, handler: ModelHandler) -> None:
        super().__init__()
        self.handler = handler

    def expand(self, elements: beam.PCollection) -> Any:
        return (
            elements
            | "RunInference" >> RunInference(self.handler)
            | "Split" >> beam.ParDo(_Split()).with_outputs(self.ERRORS, main=self.PREDICTIONS)
        )


class _Split(beam.DoFn):
    def process(self, result: PredictionResult | tuple[Any, PredictionResult]) -> Any:
        prediction = result if isinstance(result, PredictionResult) else result[1]
        if isinstance(prediction.inference, RowError):
            yield beam.pvalue.TaggedOutput(Predict.ERRORS, result)
        else:
            yield result
