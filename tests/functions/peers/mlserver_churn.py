"""Rows of the churn function sent as MLServer's pandas codec sends a DataFrame; run by the mlserver environment.

Usage: ``python mlserver_churn.py URL ROWS_JSON``. The rows become a pandas DataFrame,
``PandasCodec.encode_request`` makes the request (one input per column, shape ``[rows, 1]``, strings
as BYTES with ``content_type: str``, NaN as null), it is POSTed as MLServer serialises it, and the
answer is read back into MLServer's ``InferenceResponse`` and decoded with its ``NumpyCodec``.
Prints ``{"status", "label", "probabilities"}`` or ``{"status", "body"}``.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

import pandas as pd
from mlserver.codecs import NumpyCodec, PandasCodec
from mlserver.types import InferenceResponse


def main(url: str, rows: list[dict]) -> dict:
    frame = pd.DataFrame(rows)
    frame["monthly"] = frame["monthly"].astype("float64")  # None -> NaN, as a frame read from a CSV has it
    # Strings as object columns, as pandas 2 makes them: MLServer 1.7's codec has no datatype for
    # pandas 3's own string dtype (its to_datatype raises KeyError 'O').
    for column in ("plan", "contract"):
        frame[column] = frame[column].astype(object)
    request = PandasCodec.encode_request(frame)
    data = request.model_dump_json().encode()
    http = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(http, timeout=120) as answer:
            status, body = answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return {"status": error.code, "body": json.loads(error.read())}
    response = InferenceResponse.model_validate(body)
    decoded = {output.name: NumpyCodec.decode_output(output).tolist() for output in response.outputs}
    return {"status": status, "request": json.loads(data), **decoded}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], json.loads(sys.argv[2]))))
