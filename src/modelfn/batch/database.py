"""Batch results as rows in a database, for clients that read precomputed predictions.

One row per predicted input row, keyed by the input object, the row number, the model and its
version: a second delivery of the same event updates the same rows instead of adding new ones.
SQLite (the standard library's) is the default: ``sqlite:///path/to/results.db``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from modelfn.errors import ContractError

TABLE = "modelfn_predictions"
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    source     TEXT    NOT NULL,
    row_number INTEGER NOT NULL,
    model      TEXT    NOT NULL,
    version    TEXT    NOT NULL,
    generation TEXT    NOT NULL,
    prediction TEXT    NOT NULL,
    updated_at REAL    NOT NULL,
    PRIMARY KEY (source, row_number, model, version)
)
"""
UPSERT = f"""
INSERT INTO {TABLE} (source, row_number, model, version, generation, prediction, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (source, row_number, model, version) DO UPDATE SET
    generation = excluded.generation, prediction = excluded.prediction, updated_at = excluded.updated_at
"""


class ResultsDatabase:
    """Upserts prediction rows; one connection, used by one job at a time."""

    def __init__(self, url: str) -> None:
        scheme, sep, rest = url.partition("://")
        if scheme != "sqlite" or not sep or not rest.startswith("/"):
            raise ContractError(f"MODELFN_BATCH_DATABASE={url!r}: expected sqlite:///path/to/results.db")
        path = Path(rest[1:] if rest.startswith("//") else rest)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self._connection.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        self._connection.execute(SCHEMA)
        self._connection.commit()

    def upsert(self, *, source: str, model: str, version: str, generation: str, rows: list[tuple[int, str]]) -> None:
        """Write ``(row number, prediction JSON)`` rows in one transaction."""
        now = time.time()
        with self._lock, self._connection:
            self._connection.executemany(
                UPSERT, [(source, number, model, version, generation, text, now) for number, text in rows]
            )

    def close(self) -> None:
        self._connection.close()
