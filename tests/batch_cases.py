"""Inputs and models shared by the batch engines' tests: what ``modelfn batch`` on one machine is compared on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from helpers import DIGITS
from models import write_graph_function


def batch_here(*args: str) -> subprocess.CompletedProcess[str]:
    """``modelfn batch ARGS`` on one machine, in the test environment's own interpreter."""
    done = subprocess.run([sys.executable, "-m", "modelfn", "batch", *args], capture_output=True, text=True,
                          timeout=900, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def write_digits_inputs(folder: Path, x: np.ndarray) -> Path:
    """The held-out digits as JSON Lines, CSV (with a header) and .npy, each with bad rows, and a .tsv."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = (DIGITS / "heldout.jsonl").read_text().splitlines()
    lines[200:200] = ['{"image": "nope"}', "not json"]
    (folder / "digits.jsonl").write_text("\n".join(lines) + "\n")
    csv = [",".join(f"p{i}" for i in range(64)), *(",".join(str(int(v)) for v in row) for row in x)]
    csv[50:50] = ["1,2,3", ",".join(["nan"] * 64)]
    (folder / "digits.csv").write_text("\n".join(csv) + "\n")
    rows = x.astype(np.float32)
    rows[7, 3] = np.inf
    np.save(folder / "digits.npy", rows)
    (folder / "digits.tsv").write_text("1\t2\n")
    return folder


CHURN = DIGITS.parent / "churn"
#: Rows the churn model must refuse, each naming its column, inserted as lines 101-104 of churn.csv.
CHURN_BAD_LINES = ["twelve,pro,one-year,30.5,0", "12,gold,one-year,30.5,0", ",pro,one-year,30.5,0", "12,pro"]


def write_churn_inputs(folder: Path) -> Path:
    """The churn model's held-out rows as a CSV with its header (and its label column, which the model
    does not take), in another column order, with four bad lines; 24 rows have no monthly charge."""
    folder.mkdir(parents=True, exist_ok=True)
    header, *rows = (CHURN / "validation.csv").read_text().splitlines()
    order = [4, 3, 1, 0, 2]  # monthly, contract, label, plan, tenure: mapped by header, not by position
    reorder = lambda line: ",".join(cell for _, cell in sorted(zip(order, line.split(","), strict=True)))  # noqa: E731
    lines = [reorder(header), *(reorder(row) for row in rows[:99])]
    lines += [reorder(bad) if bad.count(",") == 4 else bad for bad in CHURN_BAD_LINES]
    lines += [reorder(row) for row in rows[99:]]
    (folder / "churn.csv").write_text("\n".join(lines) + "\n")
    return folder


EMBED = DIGITS.parent / "embed"


def write_embed_inputs(folder: Path) -> Path:
    """The helpdesk's held-out questions as embed's POST /predict bodies (one line with two texts), and two
    bad lines: a number for a text, and a text over the model's 32 tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    questions = [
        json.loads(line)["text"] for line in (DIGITS.parent / "chat" / "heldout.jsonl").read_text().splitlines()
    ]
    lines = [json.dumps({"text": question}) for question in questions]
    lines[10:10] = [json.dumps({"text": 5}), json.dumps({"text": "word " * 40}), json.dumps({"texts": questions[:2]})]
    (folder / "texts.jsonl").write_text("\n".join(lines) + "\n")
    return folder


WIDTH, PER_FILE, PARTS = 16384, 800, 4  # 64 KiB rows, 200 MiB in four files


def write_wide_function(folder: Path, width: int = WIDTH) -> Path:
    """A real ONNX model over rows of ``width`` floats: each row's largest value and where it is."""
    from onnx import helper

    nodes = [
        helper.make_node("ReduceMax", ["x"], ["top"], axes=[1], keepdims=0),
        helper.make_node("ArgMax", ["x"], ["where"], axis=1, keepdims=0),
    ]
    return write_graph_function(folder, "wide", nodes, [("x", "FP32", [-1, width])],
                                [("top", "FP32", [-1]), ("where", "INT64", [-1])], "Peak of each row.")  # fmt: skip


def write_wide_inputs(folder: Path) -> list[Path]:
    """Four .npy files of random rows for the wide model, one NaN in the third (an error row)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    paths = []
    for part in range(PARTS):
        rows = rng.standard_normal((PER_FILE, WIDTH), dtype=np.float32)
        if part == 2:
            rows[123, 5] = np.nan
        paths.append(folder / f"part-{part}.npy")
        np.save(paths[-1], rows)
    return paths


def results_of(folder: Path, name: str) -> tuple[dict[int, str], dict[int, str]]:
    """``({row: prediction JSON}, {row: error})`` from the files a batch job wrote for input ``name``."""
    predictions = {}
    for line in (folder / f"{name}.predictions.jsonl").read_bytes().splitlines():
        head, _, rest = line.partition(b',"prediction":')
        predictions[int(head.removeprefix(b'{"row":'))] = rest[:-1].decode()
    errors = {}
    for line in (folder / f"{name}.errors.jsonl").read_text().splitlines():
        error = json.loads(line)
        errors[error["row"]] = error["error"]
    return predictions, errors
