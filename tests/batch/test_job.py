"""Batch jobs over real files in a local store and the object-store emulators, with the digits model."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest
from helpers import DIGITS, copy_function, edit_contract

from modelfn.batch.database import ResultsDatabase
from modelfn.batch.job import BatchJob, Location
from modelfn.runtime.model import load_model, local_artifact
from modelfn.runtime.stores import open_store
from modelfn.settings import Settings


@pytest.fixture(scope="module")
def model():
    from modelfn.contract import load_contract

    contract = load_contract(DIGITS)
    return load_model(DIGITS, contract, Settings(), *local_artifact(contract, DIGITS))


@pytest.fixture(scope="module")
def images(heldout) -> tuple[np.ndarray, np.ndarray]:
    return heldout


def write_csv(path: Path, rows: np.ndarray, extra: list[str] = ()) -> Path:
    lines = [",".join(f"p{i}" for i in range(64))]
    lines += [",".join(str(int(v)) for v in row) for row in rows]
    path.write_text("\n".join([*lines, *extra]) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def run(model, folder: Path, name: str, chunk_rows: int = 64, **kw):
    store, _ = open_store(str(folder))
    out, _ = open_store(str(folder / "out"))
    job = BatchJob(model, chunk_rows=chunk_rows, **kw)
    return job.run(Location(store, name), Location(out, "predictions"), name)


def test_csv_rows_are_predicted_like_the_model_and_bad_rows_reported(model, images, tmp_path) -> None:
    x, _ = images
    write_csv(tmp_path / "in.csv", x[:200], extra=["1,2,3", "a,b,c", ",".join(["nan"] * 64)])
    summary = run(model, tmp_path, "in.csv")
    assert (summary["rows"], summary["predicted"], summary["failed"]) == (203, 200, 3)

    predictions = read_jsonl(tmp_path / "out/predictions/in.csv.predictions.jsonl")
    assert [p["row"] for p in predictions] == list(range(2, 202))  # line numbers; line 1 is the header
    expected = model.infer({"pixels": x[:200].astype(np.float32)})["label"]
    assert [p["prediction"]["label"] for p in predictions] == expected.tolist()
    errors = read_jsonl(tmp_path / "out/predictions/in.csv.errors.jsonl")
    assert [e["row"] for e in errors] == [202, 203, 204]
    assert errors[0]["error"] == "expected 64 numbers, got 3"
    assert "NaN" in errors[2]["error"]
    stored = json.loads((tmp_path / "out/predictions/in.csv.summary.json").read_text())
    assert stored["version"] == "1" and stored["format"] == "csv" and stored["predicted"] == 200


def test_jsonl_lines_go_through_the_hooks(model, images, tmp_path) -> None:
    x, _ = images
    lines = [json.dumps({"image": row.reshape(8, 8).tolist()}) for row in x[:20]]
    lines.insert(5, "{not json")
    lines.insert(9, json.dumps({"image": [[99] * 8] * 8}))
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    summary = run(model, tmp_path, "in.jsonl", chunk_rows=7)
    assert (summary["predicted"], summary["failed"]) == (20, 2)
    predictions = read_jsonl(tmp_path / "out/predictions/in.jsonl.predictions.jsonl")
    direct = [model.predict_json({"image": row.reshape(8, 8).tolist()})["digit"] for row in x[:20]]
    assert [p["prediction"]["digit"] for p in predictions] == direct
    errors = read_jsonl(tmp_path / "out/predictions/in.jsonl.errors.jsonl")
    assert [(e["row"], e["error"][:8]) for e in errors] == [(6, "not JSON"), (10, "pixel va")]


def test_npy_rows(model, images, tmp_path) -> None:
    x, _ = images
    np.save(tmp_path / "in.npy", x[:100].astype(np.float32))
    summary = run(model, tmp_path, "in.npy", chunk_rows=30)
    assert (summary["predicted"], summary["failed"]) == (100, 0)
    predictions = read_jsonl(tmp_path / "out/predictions/in.npy.predictions.jsonl")
    expected = model.infer({"pixels": x[:100].astype(np.float32)})["probabilities"]
    got = np.array([p["prediction"]["probabilities"] for p in predictions], dtype=np.float32)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("in.parquet", b"PAR1", "unknown input format .parquet"),
        ("in.npy", b"not numpy at all", "not a NumPy .npy file"),
        ("objects.npy", None, "Python objects"),
        ("wrong.npy", None, "rows are shaped [3]"),
    ],
)
def test_an_unreadable_file_is_one_clear_error_and_done(model, tmp_path, name, content, reason) -> None:
    if name == "objects.npy":
        np.save(tmp_path / name, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif name == "wrong.npy":
        np.save(tmp_path / name, np.zeros((4, 3), dtype=np.float32))
    else:
        (tmp_path / name).write_bytes(content)
    summary = run(model, tmp_path, name)
    assert reason in summary["error"]
    assert summary["predicted"] == 0
    [error] = read_jsonl(tmp_path / f"out/predictions/{name}.errors.jsonl")
    assert error["row"] is None and reason in error["error"]
    # Done, not failed: the same input is not tried again.
    assert run(model, tmp_path, name)["duplicate"] is True


def test_the_same_generation_twice_writes_once(model, images, tmp_path) -> None:
    x, _ = images
    write_csv(tmp_path / "in.csv", x[:50])
    first = run(model, tmp_path, "in.csv")
    written = (tmp_path / "out/predictions/in.csv.predictions.jsonl").stat()
    again = run(model, tmp_path, "in.csv")
    assert again["duplicate"] is True and again["predicted"] == first["predicted"]
    assert (tmp_path / "out/predictions/in.csv.predictions.jsonl").stat().st_ino == written.st_ino  # untouched
    # A new generation of the same object is new work.
    write_csv(tmp_path / "in.csv", x[:60])
    assert run(model, tmp_path, "in.csv")["predicted"] == 60


def test_database_rows_are_upserted_once_per_row_and_version(model, images, tmp_path) -> None:
    x, _ = images
    write_csv(tmp_path / "in.csv", x[:40], extra=["1,2"])
    database = ResultsDatabase(f"sqlite:///{tmp_path}/results.db")
    run(model, tmp_path, "in.csv", database=database)
    # A redelivery after a crash (no summary yet) runs again: the rows are updated, not added.
    (tmp_path / "out/predictions/in.csv.summary.json").unlink()
    run(model, tmp_path, "in.csv", database=database)
    database.close()
    with sqlite3.connect(tmp_path / "results.db") as connection:
        rows = connection.execute(
            "SELECT row_number, version, prediction FROM modelfn_predictions ORDER BY 1"
        ).fetchall()
    assert len(rows) == 40 and [r[0] for r in rows] == list(range(2, 42))
    assert {r[1] for r in rows} == {"1"}
    assert json.loads(rows[0][2])["label"] == int(model.infer({"pixels": x[:1].astype(np.float32)})["label"][0])


@pytest.mark.slow
def test_memory_stays_bounded_whatever_the_file_size(model, images, tmp_path, monkeypatch) -> None:
    """With 64 KiB reads and 500-row chunks, 4x the rows does not raise the peak of traced allocations."""
    import tracemalloc

    from modelfn.batch import formats

    monkeypatch.setattr(formats, "BLOCK", 64 << 10)
    x, _ = images
    peaks, sizes = [], []
    for count in (8_000, 32_000):
        rows = np.tile(x, (count // len(x) + 1, 1))[:count]
        name = f"rows{count}.csv"
        sizes.append(write_csv(tmp_path / name, rows).stat().st_size)
        tracemalloc.start()
        try:
            summary = run(model, tmp_path, name, chunk_rows=500)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert summary["predicted"] == count
    assert peaks[1] < 1.25 * peaks[0], f"peaks {peaks} for files of {sizes} bytes"
    assert peaks[1] < sizes[1] / 4


def test_a_crash_halfway_leaves_no_partial_output(images, tmp_path) -> None:
    """A process that dies in the middle writes no object; the redelivery writes all of it."""
    x, _ = images
    folder = copy_function(tmp_path)
    hooks = folder / "hooks.py"
    hooks.write_text(
        hooks.read_text() + "\n\nimport os as _os\n_original = postprocess\n\n\n"
        "def postprocess(outputs, payload):\n"
        "    if payload.get('crash') and _os.environ.get('CRASH_NOW'):\n"
        "        _os._exit(3)\n"
        "    return _original(outputs, payload)\n"
    )
    edit_contract(folder, hooks={"pre": "hooks.py:preprocess", "post": "hooks.py:postprocess"})
    lines = [{"image": row.reshape(8, 8).tolist()} for row in x[:300]]
    lines[250]["crash"] = True
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    source, output = str(tmp_path / "in.jsonl"), str(tmp_path / "out")
    command = [sys.executable, "-m", "modelfn", "batch", str(folder), source, "--output", output, "--chunk-rows", "100"]

    died = subprocess.run(command, env={**os.environ, "CRASH_NOW": "1"}, capture_output=True, check=False)
    assert died.returncode == 3
    # No object: at most the hidden partial file a killed writer leaves (store listings skip it).
    out = tmp_path / "out"
    assert not out.exists() or all(path.name.startswith(".") for path in out.iterdir())

    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert len(read_jsonl(tmp_path / "out/in.jsonl.predictions.jsonl")) == 300


def test_a_csv_line_of_any_length_is_one_error_row_in_bounded_memory(model, images, tmp_path) -> None:
    """A 12 MB line (over the 4 MiB line limit) and a 3 MB line of 1.5 million cells (under it): each is one
    error row, and the job's traced peak stays a few times the line limit (the csv module alone held
    every cell of a line: about 29x its size)."""
    import tracemalloc

    x, _ = images
    good = "\n".join(",".join(str(int(v)) for v in row) for row in x[:10])
    huge = "1," * 6_000_000 + "1"
    wide = "1," * 1_500_000 + "1"
    (tmp_path / "in.csv").write_text("\n".join([good, huge, wide, good]) + "\n")
    tracemalloc.start()
    try:
        summary = run(model, tmp_path, "in.csv", max_line_bytes=4 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (summary["rows"], summary["predicted"], summary["failed"]) == (22, 20, 2)
    errors = read_jsonl(tmp_path / "out/predictions/in.csv.errors.jsonl")
    assert [(e["row"], e["error"]) for e in errors] == [
        (11, f"the line is over {4 << 20} bytes"),
        (12, "expected 64 numbers, got 1500001"),
    ]
    assert peak < 48 << 20, f"peak {peak / 2**20:.0f} MiB"


def test_a_truncated_npy_predicts_every_whole_row_and_reports_the_missing_ones(model, images, tmp_path) -> None:
    x, _ = images
    np.save(tmp_path / "in.npy", x[:100].astype(np.float32))
    data = (tmp_path / "in.npy").read_bytes()
    (tmp_path / "in.npy").write_bytes(data[: len(data) - 2 * 64 * 4 - 100])  # two rows and part of a third gone
    summary = run(model, tmp_path, "in.npy")
    assert (summary["rows"], summary["predicted"], summary["failed"]) == (98, 97, 1)
    [error] = read_jsonl(tmp_path / "out/predictions/in.npy.errors.jsonl")
    assert error == {
        "row": 98,
        "error": "rows 98 to 100 missing: the file ends after 97 of the 100 rows its header declares",
    }
