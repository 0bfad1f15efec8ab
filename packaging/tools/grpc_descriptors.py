"""Write src/modelfn/adapters/grpc_oip/descriptors.py from the .proto files beside it.

Run with an interpreter that has grpcio-tools (make grpc-descriptors uses .tools/kserve's)::

    python packaging/tools/grpc_descriptors.py [--check]

The module holds the serialized ``FileDescriptorSet`` that modelfn loads into a descriptor pool of
its own: no generated ``_pb2`` module, so nothing registers ``inference.*`` in protobuf's default
pool, where a client's generated modules (tritonclient.grpc) register the same names.
"""

from __future__ import annotations

import base64
import sys
import tempfile
from pathlib import Path

FOLDER = Path(__file__).resolve().parents[2] / "src" / "modelfn" / "adapters" / "grpc_oip"
PROTOS = ("inference.proto", "health.proto")
HEADER = '''"""The serialized descriptors of inference.proto and health.proto (generated: do not edit).

Regenerate with ``make grpc-descriptors`` after changing a .proto file.
"""

'''


def render() -> str:
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "set.binpb"
        arguments = ["protoc", f"-I{FOLDER}", f"--descriptor_set_out={out}", *(str(FOLDER / p) for p in PROTOS)]
        status = protoc.main(arguments)
        if status:
            raise SystemExit(f"protoc failed ({status})")
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    lines = [HEADER, "#: Each file's serialized FileDescriptorProto, base64-encoded.\nFILES = (\n"]
    for file in files:
        encoded = base64.b64encode(file.SerializeToString(deterministic=True)).decode()
        lines.append(f"    # {file.name}\n")
        lines.extend(f'    "{encoded[start : start + 100]}"\n' for start in range(0, len(encoded), 100))
        lines[-1] = lines[-1].rstrip("\n") + ",\n"
    lines.append(")\n")
    return "".join(lines)


def main() -> None:
    target = FOLDER / "descriptors.py"
    text = render()
    if "--check" in sys.argv:
        if not target.is_file() or target.read_text() != text:
            raise SystemExit(f"{target} is not what the .proto files give: run make grpc-descriptors")
        return
    target.write_text(text)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
