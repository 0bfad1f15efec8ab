"""Pre/post-processing hooks: plain functions in the function folder.

``pre(payload) -> {input_name: array-like}`` turns the plain JSON body into
tensors; ``post(outputs, payload) -> JSON-able`` turns named output arrays into
the answer. Both are optional, and so is ``turn(turn) -> payload``, which maps a conversation
turn (``/alexa``, ``/dialogflow``) to the payload. A hook rejects bad input by raising
:class:`modelfn.InvalidInput`; anything else it raises is a model fault (500,
generic message, traceback in the log).

Hook files are imported as modules of one package per model whose path is the
model's folder, so a hook file can import its siblings with ``from .tokenizer import
split``, and two models' ``tokenizer.py`` never collide.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from modelfn.errors import ContractError

PreHook = Callable[[Any], Any]
#: ``post(outputs, payload)``, or ``post(outputs, payload, inputs)`` (see :class:`LoadedHooks`).
PostHook = Callable[..., Any]
TurnHook = Callable[[dict[str, Any]], Any]


class LoadedHooks(NamedTuple):
    pre: PreHook | None = None
    post: PostHook | None = None
    turn: TurnHook | None = None
    #: The post hook declares a parameter named ``inputs``: it is given the tensors the model ran on
    #: (the pre hook's), as ``post(outputs, payload, inputs=...)``, and need not compute them again
    #: (an attention mask for mean pooling, say).
    post_takes_inputs: bool = False


def load_hooks(
    folder: str | Path, pre: str | None, post: str | None, *, namespace: str, turn: str | None = None
) -> LoadedHooks:
    """Import the hook functions named ``file.py:function`` from inside ``folder``.

    ``namespace`` keeps hook modules of different models apart in ``sys.modules``.
    """
    modules: dict[Path, Any] = {}
    # Resolved in this order (pre, post, turn): it is the order their files are imported in.
    pre_hook = _resolve(folder, pre, "hooks.pre", 1, namespace, modules) if pre else None
    post_hook = _resolve(folder, post, "hooks.post", 2, namespace, modules) if post else None
    return LoadedHooks(
        pre=pre_hook,
        post=post_hook,
        turn=_resolve(folder, turn, "hooks.turn", 1, namespace, modules) if turn else None,
        post_takes_inputs=post_hook is not None and takes_inputs(post_hook),
    )


def hook_namespace(name: str, version: str) -> str:
    """The ``namespace`` of a model version's hook modules (see :func:`load_hooks`)."""
    return f"{name}_{version}".replace(".", "_").replace("-", "_")


def load_hook(folder: str | Path, ref: str, field: str, *, namespace: str) -> Callable[..., Any]:
    """One more hook function of ``folder`` (``file.py:function``, one argument), its file imported once per model."""
    file_name = ref.partition(":")[0]
    base = Path(folder).resolve()
    package = _package(base, namespace)
    path = (base / file_name).resolve()
    known = sys.modules.get(".".join((package, *path.relative_to(base).with_suffix("").parts))) if (
        path.is_relative_to(base)) else None  # fmt: skip
    return _resolve(folder, ref, field, 1, namespace, {path: known} if known is not None else {})


def takes_inputs(hook: Callable[..., Any]) -> bool:
    """Whether a post hook declares a parameter named ``inputs`` (see :class:`LoadedHooks`)."""
    try:
        parameter = inspect.signature(hook).parameters.get("inputs")
    except ValueError:  # a builtin without a signature
        return False
    return parameter is not None and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)


def _resolve(
    folder: str | Path, ref: str, field: str, arity: int, namespace: str, modules: dict[Path, Any]
) -> Callable[..., Any]:
    file_name, _, function_name = ref.partition(":")
    base = Path(folder).resolve()
    path = (base / file_name).resolve()
    if not path.is_relative_to(base):
        raise ContractError(f"field `{field}`: {file_name!r} points outside the function folder")
    if not path.is_file():
        raise ContractError(f"field `{field}`: {path} does not exist")
    if path not in modules:
        modules[path] = _import(path, _package(base, namespace), field)
    function = getattr(modules[path], function_name, None)
    if not callable(function):
        raise ContractError(f"field `{field}`: {file_name} defines no function {function_name!r}")
    _check_arity(function, arity, field, ref)
    return function


def _package(base: Path, namespace: str) -> str:
    """The package whose path is the model folder (made once), so hook files can import their siblings."""
    name = f"modelfn_hooks_{namespace}"
    known = sys.modules.get(name)
    if known is None or list(getattr(known, "__path__", ())) != [str(base)]:
        package = types.ModuleType(name)
        package.__path__ = [str(base)]
        package.__package__ = name
        sys.modules[name] = package
    return name


def _import(path: Path, package: str, field: str) -> Any:
    base = Path(sys.modules[package].__path__[0])
    parts = path.relative_to(base).with_suffix("").parts
    if not all(part.isidentifier() for part in parts):
        raise ContractError(f"field `{field}`: {path.name} must be a Python module name (letters, digits, _)")
    module_name = ".".join((package, *parts))
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ContractError(f"field `{field}`: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise ContractError(f"field `{field}`: importing {path.name} failed: {exc!r}") from exc
    return module


def _check_arity(function: Callable[..., Any], arity: int, field: str, ref: str) -> None:
    try:
        extra = {"inputs": None} if field == "hooks.post" and takes_inputs(function) else {}
        inspect.signature(function).bind(*range(arity), **extra)
    except TypeError:
        expected = {"hooks.pre": "pre(payload)", "hooks.post": "post(outputs, payload)"}.get(field, "turn(turn)")
        raise ContractError(f"field `{field}`: {ref} must accept {arity} argument(s), like {expected}") from None
    except ValueError:  # builtins without a signature: trust them
        pass
