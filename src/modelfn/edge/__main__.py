"""``python -m modelfn.edge {predict,serve,info}`` in an edge bundle (see :mod:`modelfn.edge`)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

from modelfn.errors import ModelfnError

#: The bundle's model folder: ``model/`` beside the ``modelfn`` package.
DEFAULT_MODEL = Path(__file__).resolve().parent.parent.parent / "model"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelfn.edge", description=__doc__)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="the model folder (default: ./model)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime's threads (0: one per core)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("predict", help="read one POST /predict body on stdin, write the answer on stdout")
    serve = commands.add_parser("serve", help="answer POST /predict and the OIP routes over HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--max-body-bytes", type=int, default=16 << 20)
    commands.add_parser("info", help="print the model's name, version and tensors")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)

    from . import answers
    from .model import EdgeModel

    try:
        model = EdgeModel(args.model, threads=args.threads)
        if args.command == "info":
            sys.stdout.write(answers.metadata(model, model.name).decode() + "\n")
        elif args.command == "predict":
            sys.stdout.write(answers.predict(model, sys.stdin.buffer.read()).decode() + "\n")
        else:
            from .server import make_server

            server = make_server(model, args.host, args.port, max_body_bytes=args.max_body_bytes)
            logging.info(
                "serving %s v%s on http://%s:%d", model.name, model.version, args.host, server.server_address[1]
            )
            with contextlib.suppress(KeyboardInterrupt):
                server.serve_forever()
    except ModelfnError as exc:
        sys.stderr.write(answers.dumps({"error": str(exc), "status": exc.status}).decode() + "\n")
        return 1 if exc.status < 500 else 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
