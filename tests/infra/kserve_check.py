"""Checks KServe InferenceServices (a JSON array on stdin) against the KServe SDK's own API types.

Run with the kserve environment's interpreter (.tools/kserve). The SDK's models are generated from
KServe's OpenAPI document: every key of a document must be a field of its type (nothing unknown,
nothing misspelt) and every value of the field's type; where KServe embeds Kubernetes types (the
containers, probes, volumes), the Kubernetes client's models check them, strictly (unknown fields
and missing required ones are errors). Prints one
line of JSON: each document's errors ([] when valid).
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import kserve.models as kserve_models
import kubernetes.client.models as core
import pydantic

SCALARS = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object, "datetime": str}


def model_class(name: str) -> Any:
    return getattr(kserve_models, name, None) or getattr(core, name)


def walk(value: Any, kind: str, where: str, errors: list[str]) -> None:
    if value is None:
        return
    if kind in SCALARS:
        if not isinstance(value, SCALARS[kind]) or (kind == "int" and isinstance(value, bool)):
            errors.append(f"{where}: expected {kind}, got {type(value).__name__}")
        return
    if kind == "ResourceQuantity":
        if not isinstance(value, (str, int, float)):
            errors.append(f"{where}: expected a quantity")
        return
    listed = re.fullmatch(r"(?:list|List)\[(.+)\]", kind)
    if listed:
        if not isinstance(value, list):
            errors.append(f"{where}: expected a list")
            return
        for index, item in enumerate(value):
            walk(item, listed.group(1), f"{where}[{index}]", errors)
        return
    mapped = re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", kind)
    if mapped:
        if not isinstance(value, dict):
            errors.append(f"{where}: expected an object")
            return
        for key, item in value.items():
            walk(item, mapped.group(1) or mapped.group(2), f"{where}.{key}", errors)
        return
    cls = model_class(kind)
    if isinstance(cls, type) and issubclass(cls, pydantic.BaseModel):  # the Kubernetes client's: strict models
        try:
            cls.model_validate(value)
        except pydantic.ValidationError as exc:
            errors.extend(f"{where}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return
    if not isinstance(value, dict):
        errors.append(f"{where}: expected a {kind} object")
        return
    fields = {json_name: cls.openapi_types[attribute] for attribute, json_name in cls.attribute_map.items()}
    for key, item in value.items():
        if key not in fields:
            errors.append(f"{where}: {key!r} is not a field of {kind}")
        else:
            walk(item, fields[key], f"{where}.{key}", errors)


def check(document: Any) -> list[str]:
    errors: list[str] = []
    walk(document, "V1beta1InferenceService", "", errors)
    if document.get("apiVersion") != "serving.kserve.io/v1beta1" or document.get("kind") != "InferenceService":
        errors.append("not a serving.kserve.io/v1beta1 InferenceService")
    return errors


if __name__ == "__main__":
    print(json.dumps([check(document) for document in json.load(sys.stdin)]))
