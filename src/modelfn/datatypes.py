"""Open Inference Protocol datatypes and their numpy and ONNX counterparts.

Plain strings only, so the contract can use this table without importing numpy.
"""

from __future__ import annotations

from typing import Literal

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip

#: OIP datatype -> numpy dtype name. BYTES tensors are numpy object arrays of ``str``.
NUMPY_DTYPES: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "object",
}

#: numpy dtype name -> OIP datatype (``str_``/``bytes_`` arrays map to BYTES too).
DATATYPE_OF_NUMPY: dict[str, str] = {v: k for k, v in NUMPY_DTYPES.items()}

#: ONNX Runtime type string -> OIP datatype.
DATATYPE_OF_ONNX: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}

#: OIP datatype -> ONNX Runtime Web's tensor type (``ort.Tensor``'s ``type``), what the browser's
#: JavaScript hooks produce and receive.
WEB_TYPES: dict[str, str] = {k: ("string" if k == "BYTES" else v) for k, v in NUMPY_DTYPES.items()}
