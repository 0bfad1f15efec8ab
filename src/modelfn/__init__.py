"""modelfn: a trained model as a fast, secure serverless function.

The public surface is small on purpose:

- :func:`modelfn.adapters.gcf.http_function` builds the functions-framework
  target for a function folder (``functions/<name>/main.py`` calls it);
- :class:`InvalidInput` is what a pre-processing hook raises to reject a
  request with a 400 and a message for the caller.

Importing this package is cheap: no numpy, no ONNX Runtime, no cloud SDK.
"""

from modelfn.errors import InvalidInput, ModelfnError

__version__ = "0.1.0"

__all__ = ["InvalidInput", "ModelfnError", "__version__"]
