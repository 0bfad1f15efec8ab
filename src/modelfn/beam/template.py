"""The batch pipeline's entry point: what a Dataflow flex template runs, and a hand-off's child process.

``python -m modelfn.beam.template --input=URI --output=URI [--name=N] [--model=REF] [--function=DIR]
[--database=URL] [Beam's own options...]``

- ``--function``: the function folder (default ``MODELFN_FUNCTION_FOLDER``, else ``/template/function``,
  where ``modelfn build --target dataflow`` puts it in the image);
- ``--model``: a registry version to run with the folder's hooks (the hand-off pins the version its
  function serves); default: the folder's own model;
- ``--input``: a file or object, or a glob of many; ``--name``: the results' name for one input (a
  storage event's key under its prefix), default each input's file name.

Every other flag goes to Beam (``--runner=DataflowRunner``, ``--direct_num_workers=2``...); with no
``--runner`` the pipeline runs here, on Beam's portable runner.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

DEFAULT_FOLDER = "/template/function"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelfn.beam.template", description=__doc__.split("\n")[0])
    parser.add_argument("--function", default=os.environ.get("MODELFN_FUNCTION_FOLDER", DEFAULT_FOLDER))
    parser.add_argument("--model", default="", help="a registry reference; default: the folder's own model")
    parser.add_argument("--member", default=None, help="the model of a several-model folder")
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--name", default="")
    parser.add_argument("--database", default="")
    known, beam_flags = parser.parse_known_args(argv)
    image = os.environ.get("MODELFN_SDK_IMAGE", "")
    if image and not any(flag.startswith("--sdk_container_image") for flag in beam_flags):
        beam_flags.append(f"--sdk_container_image={image}")  # the workers start from the template's own image

    from modelfn.adapters.process import configure_logging
    from modelfn.batch.inputs import expand_inputs
    from modelfn.beam import pipeline
    from modelfn.errors import ContractError, ModelfnError
    from modelfn.offline import ModelSource
    from modelfn.settings import Settings

    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    try:
        source = (
            ModelSource.of(known.model, folder=known.function, member=known.member)
            if known.model
            else ModelSource.of(known.function, member=known.member)
        )
        inputs = expand_inputs(known.input)
        if known.name:
            if len(inputs) != 1:
                raise ContractError(f"--name names one input's results; {known.input} matches {len(inputs)}")
            inputs = [(inputs[0][0], known.name)]
        summaries = pipeline.run(source, inputs, known.output, database=known.database,
                                 max_line_bytes=settings.max_body_bytes, options=beam_flags)  # fmt: skip
    except ModelfnError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    for summary in summaries:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
