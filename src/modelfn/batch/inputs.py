"""A batch's input: one file or object, or a glob of many (``data/part-*.csv``, ``gs://b/in/*.jsonl``)."""

from __future__ import annotations

import fnmatch
import glob
from pathlib import Path

from modelfn.batch.job import Location
from modelfn.errors import ContractError, ObjectNotFound
from modelfn.runtime.stores import open_store

GLOB_CHARACTERS = "*?["


def expand_inputs(source: str) -> list[tuple[Location, str]]:
    """``(location, name)`` of every input ``source`` names, sorted; the name is what its results take.

    A pattern matches within one store (``*`` does not cross ``/`` in an object key). Two inputs
    of the same file name would write the same results, so they are refused.
    """
    remote = "://" in source and not source.startswith("file://")
    found = _remote(source) if remote else _local(source.removeprefix("file://"))
    if not found:
        raise ObjectNotFound(f"no input matches {source}")
    names = [name for _, name in found]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ContractError(f"{source}: several inputs are named {', '.join(twice)}; their results would collide")
    return found


def _local(pattern: str) -> list[tuple[Location, str]]:
    from modelfn.runtime.stores.local import LocalStore

    paths = sorted(glob.glob(pattern)) if any(c in pattern for c in GLOB_CHARACTERS) else [pattern]
    found = []
    for text in paths:
        path = Path(text).resolve()
        if path.is_file() and not path.name.startswith("."):
            found.append((Location(LocalStore(path.parent), path.name), path.name))
    return found


def _remote(uri: str) -> list[tuple[Location, str]]:
    cut = min((uri.index(c) for c in GLOB_CHARACTERS if c in uri), default=len(uri))
    if cut == len(uri):
        store, key = open_store(uri)
        if not key:
            raise ContractError(f"{uri} names a bucket, not an object")
        return [(Location(store, key), key.rsplit("/", 1)[-1])] if store.stat(key) is not None else []
    head = uri[:cut]
    base = head.rsplit("/", 1)[0] if "/" in head.split("://", 1)[1] else head
    store, prefix = open_store(base)
    scheme_bucket = uri.split("://", 1)[1].split("/", 1)
    pattern = scheme_bucket[1] if len(scheme_bucket) > 1 else ""
    keys = [key for key in store.list(prefix) if _matches(key, pattern)]
    return [(Location(store, key), key.rsplit("/", 1)[-1]) for key in sorted(keys)]


def _matches(key: str, pattern: str) -> bool:
    """fnmatch, with ``*`` kept within one path segment, as a shell glob does."""
    return key.count("/") == pattern.count("/") and fnmatch.fnmatchcase(key, pattern)
