"""``modelfn batch --runner beam`` against ``modelfn batch`` on one machine: the same files, byte for byte."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from batch_cases import (
    CHURN,
    EMBED,
    batch_here,
    write_churn_inputs,
    write_digits_inputs,
    write_embed_inputs,
    write_wide_function,
    write_wide_inputs,
)
from engines_env import modelfn_batch
from helpers import DIGITS, copy_function

pytestmark = pytest.mark.slow  # Beam pipelines in the engines' interpreter

TWO_WORKERS = ["--runner-option=--direct_num_workers=2", "--runner-option=--direct_running_mode=multi_processing"]
#: What may differ between two runs' summaries: where they wrote, and how long they took.
PLACES = ("predictions", "errors", "seconds")


def outputs(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if not path.name.startswith(".")}


def assert_same_results(here: Path, beam: Path) -> None:
    """Every prediction and error file identical; every summary the same but for its paths and time."""
    mine, theirs = outputs(here), outputs(beam)
    assert sorted(mine) == sorted(theirs)
    for name, data in mine.items():
        if name.endswith(".summary.json"):
            strip = lambda raw: {k: v for k, v in json.loads(raw).items() if k not in PLACES}  # noqa: E731
            assert strip(theirs[name]) == strip(data), name
        else:
            assert theirs[name] == data, name


def rows_of(database: Path) -> list[tuple]:
    with sqlite3.connect(database) as connection:
        return connection.execute(
            "SELECT source, row_number, model, version, generation, prediction, updated_at FROM modelfn_predictions "
            "ORDER BY source, row_number"
        ).fetchall()


@pytest.fixture(scope="module")
def digits_inputs(tmp_path_factory, heldout) -> Path:
    return write_digits_inputs(tmp_path_factory.mktemp("inputs"), heldout[0])


def test_the_held_out_digits_give_the_same_files_and_rows_and_a_rerun_writes_nothing(digits_inputs, tmp_path):
    here, beam = tmp_path / "here", tmp_path / "beam"
    pattern = str(digits_inputs / "digits.*")
    batch_here(str(DIGITS), pattern, "--output", str(here), "--database", f"sqlite:///{tmp_path / 'here.db'}")
    done = modelfn_batch(str(DIGITS), pattern, "--output", str(beam), "--database", f"sqlite:///{tmp_path / 'beam.db'}",
                         *TWO_WORKERS, beam=True)  # fmt: skip
    assert "digits.csv: 362 rows, 360 predicted, 2 failed" in done.stdout, done.stdout
    assert_same_results(here, beam)
    errors = [json.loads(line) for line in (beam / "digits.jsonl.errors.jsonl").read_text().splitlines()]
    assert [e["row"] for e in errors] == [201, 202]
    summary = json.loads((beam / "digits.tsv.summary.json").read_text())
    assert summary["rows"] == 0 and "unknown input format .tsv" in summary["error"]
    here_rows, beam_rows = rows_of(tmp_path / "here.db"), rows_of(tmp_path / "beam.db")
    assert len(beam_rows) == 360 * 3 - 1
    assert [r[:6] for r in beam_rows] == [r[:6] for r in here_rows]

    written = {path.name: path.stat().st_mtime_ns for path in beam.iterdir()}
    again = modelfn_batch(str(DIGITS), pattern, "--output", str(beam), "--database",
                          f"sqlite:///{tmp_path / 'beam.db'}", beam=True)  # fmt: skip
    assert again.stdout.count("already done (same input and version)") == 4, again.stdout
    assert {path.name: path.stat().st_mtime_ns for path in beam.iterdir()} == written
    assert rows_of(tmp_path / "beam.db") == beam_rows  # not even an upsert's timestamp moved


def test_a_csv_of_customers_is_read_by_its_header_as_on_one_machine(tmp_path) -> None:
    """The churn pipeline (scikit-learn on a DataFrame) over a CSV whose columns are in another order,
    with four bad lines: the same prediction and error files from both runners."""
    inputs = write_churn_inputs(tmp_path / "inputs")
    here, beam = tmp_path / "here", tmp_path / "beam"
    batch_here(str(CHURN), str(inputs / "churn.csv"), "--output", str(here))
    done = modelfn_batch(str(CHURN), str(inputs / "churn.csv"), "--output", str(beam), *TWO_WORKERS, beam=True)
    assert "churn.csv: 1,004 rows, 1,000 predicted, 4 failed" in done.stdout, done.stdout
    assert_same_results(here, beam)
    errors = [json.loads(line)["error"] for line in (beam / "churn.csv.errors.jsonl").read_text().splitlines()]
    assert errors[0] == "column 'tenure': 'twelve' is not a number"


def test_texts_are_embedded_as_on_one_machine(tmp_path) -> None:
    """functions/embed (a text encoder, no hooks) over JSON Lines of texts: the same vectors and errors."""
    inputs = write_embed_inputs(tmp_path / "inputs")
    here, beam = tmp_path / "here", tmp_path / "beam"
    batch_here(str(EMBED), str(inputs / "texts.jsonl"), "--output", str(here))
    done = modelfn_batch(str(EMBED), str(inputs / "texts.jsonl"), "--output", str(beam), *TWO_WORKERS, beam=True)
    assert "texts.jsonl: 134 rows, 132 predicted, 2 failed" in done.stdout, done.stdout
    assert_same_results(here, beam)
    errors = [json.loads(line)["error"] for line in (beam / "texts.jsonl.errors.jsonl").read_text().splitlines()]
    assert errors == [
        'send {"text": "..."} or {"texts": ["...", ...]}',
        "text 0 is 82 tokens; this model takes at most 32",
    ]


def test_a_few_hundred_megabytes_in_several_files_give_the_same_rows(tmp_path) -> None:
    """Four .npy files of 64 KiB rows, 200 MiB in all, one bad row: the same files from both runners."""
    folder = write_wide_function(tmp_path / "wide")
    write_wide_inputs(tmp_path)
    assert sum(p.stat().st_size for p in tmp_path.glob("part-*.npy")) > 200 << 20
    here, beam = tmp_path / "here", tmp_path / "beam"
    batch_here(str(folder), str(tmp_path / "part-*.npy"), "--output", str(here))
    modelfn_batch(str(folder), str(tmp_path / "part-*.npy"), "--output", str(beam), *TWO_WORKERS, beam=True)
    assert_same_results(here, beam)
    summaries = [json.loads((beam / f"part-{p}.npy.summary.json").read_text()) for p in range(4)]
    assert [(s["rows"], s["failed"]) for s in summaries] == [(800, 0), (800, 0), (800, 1), (800, 0)]


def test_a_corrupt_model_is_refused_before_any_row_is_predicted(digits_inputs, tmp_path) -> None:
    folder = copy_function(tmp_path)
    data = bytearray((folder / "model.onnx").read_bytes())
    data[-100] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))
    out = tmp_path / "out"
    done = modelfn_batch(str(folder), str(digits_inputs / "digits.*"), "--output", str(out), beam=True, check=False)
    assert done.returncode == 1
    assert "digest mismatch" in done.stderr and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert not out.exists() or not list(out.iterdir())
