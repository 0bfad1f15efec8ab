"""modelfn: a trained model as a fast, secure serverless function.

The public surface is small on purpose:

- :func:`modelfn.adapters.gcf.http_function` builds the functions-framework
  target for a function folder (``functions/<name>/main.py`` calls it);
- :class:`InvalidInput` is what a pre-processing hook raises to reject a
  request with a 400 and a message for the caller;
- :class:`Upload` is a file a pre-processing hook receives (a contract with ``uploads:``).

Importing this package is cheap: no numpy, no ONNX Runtime, no cloud SDK.
"""

from typing import TYPE_CHECKING, Any

from modelfn.errors import InvalidInput, ModelfnError

if TYPE_CHECKING:
    from modelfn.upload import Upload

__version__ = "0.1.0"

__all__ = ["InvalidInput", "ModelfnError", "Upload", "__version__"]


def __getattr__(name: str) -> Any:
    """``modelfn.Upload``, imported when asked for: a function without uploads never defines it (~1 ms)."""
    if name == "Upload":
        from modelfn.upload import Upload

        return Upload
    raise AttributeError(f"module 'modelfn' has no attribute {name!r}")
