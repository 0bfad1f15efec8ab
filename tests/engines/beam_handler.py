"""Runs ``RunInference(KeyedModelHandler(model_handler(...)))`` through modelfn.beam.Predict, in the engines' env.

``python beam_handler.py CONFIG.json``; CONFIG: ``source``, ``folder`` (hooks of a registry model),
``elements`` (``[key, kind, value]``: kind ``payload``, ``row`` (a list, made a float32 array) or
``oip``), ``options`` (Beam flags). Writes ``report``: each key's inference or error, Beam's metrics.
"""

import json
import sys

import apache_beam as beam
import numpy as np
import orjson
from apache_beam.ml.inference.base import KeyedModelHandler
from apache_beam.options.pipeline_options import PipelineOptions

from modelfn.beam import Predict, model_handler


def element(kind, value):
    return np.asarray(value, dtype=np.float32) if kind == "row" else value


def main(config_path: str) -> None:
    with open(config_path) as file:
        config = json.load(file)
    handler = model_handler(config["source"], folder=config.get("folder"))
    elements = [(key, element(kind, value)) for key, kind, value in config["elements"]]
    found = {}

    class Collect(beam.DoFn):
        """Writes each result to its own file: the DoFns may run in other processes."""

        def __init__(self, folder, outcome):
            self.folder, self.outcome = folder, outcome

        def process(self, keyed):
            key, result = keyed
            value = result.inference.error if self.outcome == "error" else result.inference
            record = {"value": value, "model_id": result.model_id}
            with open(f"{self.folder}/{key}.{self.outcome}.json", "wb") as out:  # float32 as the batch job writes it
                out.write(orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY))

    folder = config["out"]
    pipeline = beam.Pipeline(options=PipelineOptions(config.get("options", ["--runner=FnApiRunner"])))
    results = pipeline | beam.Create(elements) | Predict(KeyedModelHandler(handler))
    _ = results.predictions | "Predictions" >> beam.ParDo(Collect(folder, "prediction"))
    _ = results.errors | "Errors" >> beam.ParDo(Collect(folder, "error"))
    outcome = pipeline.run()
    outcome.wait_until_finish()
    import pathlib

    for path in sorted(pathlib.Path(folder).glob("*.json")):
        key, kind, _ = path.name.rsplit(".", 2)
        found[key] = {kind: json.loads(path.read_text())["value"], "model_id": json.loads(path.read_text())["model_id"]}
    metrics = {}
    for counter in outcome.metrics().query()["counters"]:
        metrics[counter.key.metric.name] = metrics.get(counter.key.metric.name, 0) + counter.committed
    for dist in outcome.metrics().query()["distributions"]:
        name = dist.key.metric.name + ".count"
        metrics[name] = metrics.get(name, 0) + dist.committed.count
    with open(config["report"], "w") as out:
        json.dump({"results": found, "model_id": handler.model_id, "metrics": metrics}, out)


if __name__ == "__main__":
    main(sys.argv[1])
