"""The gRPC server's messages: Triton's, field for field, built from descriptors that the .proto files give."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tritonclient.grpc import service_pb2

from modelfn.adapters.grpc_oip import messages


def test_the_messages_are_field_for_field_tritons() -> None:
    """Every field of every message modelfn defines has Triton's number, type and label: the same wire format."""

    def fields(descriptor) -> dict[str, tuple]:
        found = {}
        for field in descriptor.fields:
            kind = field.message_type.full_name if field.message_type else field.type
            found[field.name] = (field.number, kind, field.is_repeated)
        return found

    checked = 0
    for name, ours in messages.POOL.FindFileByName("inference.proto").message_types_by_name.items():
        theirs = service_pb2.DESCRIPTOR.message_types_by_name[name]
        pending = [(ours, theirs)]
        while pending:
            mine, reference = pending.pop()
            mine_fields, reference_fields = fields(mine), fields(reference)
            assert mine_fields == {key: reference_fields[key] for key in mine_fields}, mine.full_name
            pending += [(nested, reference.nested_types_by_name[nested.name]) for nested in mine.nested_types]
            checked += 1
    assert checked > 20
    triton_service = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    for method in messages.POOL.FindServiceByName(messages.SERVICE).methods:
        assert triton_service.methods_by_name[method.name].input_type.name == method.input_type.name


def test_the_descriptors_are_what_the_proto_files_give() -> None:
    """``descriptors.py`` is regenerated from the .proto files (make grpc-descriptors), never edited."""
    python = Path(__file__).parents[2] / ".tools" / "kserve" / "bin" / "python"
    if not python.exists():
        pytest.skip("needs grpcio-tools from .tools/kserve (make tools)")
    script = Path(__file__).parents[2] / "packaging" / "tools" / "grpc_descriptors.py"
    result = subprocess.run([str(python), str(script), "--check"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
