"""Batch results as rows in a database, for clients that read precomputed predictions.

One row per predicted input row, keyed by the input object, the row number, the model and its
version: a second delivery of the same event updates the same rows instead of adding new ones.

- SQLite (the standard library's), the default: ``sqlite:///path/to/results.db``;
- PostgreSQL through a DSN: ``postgresql://user:password@host:5432/db``, with psycopg 3
  (``pip install 'modelfn[postgres]'``, or ``dependencies: ["psycopg[binary]"]`` in the contract).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from modelfn.errors import ContractError, StoreUnavailable

TABLE = "modelfn_predictions"
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    source     TEXT             NOT NULL,
    row_number INTEGER          NOT NULL,
    model      TEXT             NOT NULL,
    version    TEXT             NOT NULL,
    generation TEXT             NOT NULL,
    prediction TEXT             NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
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
    """Upserts prediction rows; one connection, one transaction per chunk."""

    def __init__(self, url: str) -> None:
        scheme, sep, rest = url.partition("://")
        self.url = url
        self._lock = threading.Lock()
        if scheme == "sqlite" and sep and rest.startswith("/"):
            path = Path(rest[1:] if rest.startswith("//") else rest)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._connection: Any = sqlite3.connect(path, timeout=30, check_same_thread=False)
            _use_write_ahead_log(self._connection)
            self._upsert = UPSERT
        elif scheme in ("postgresql", "postgres") and sep:
            self._connection = _postgres(url)
            self._upsert = UPSERT.replace("?", "%s")
        else:
            raise ContractError(
                f"MODELFN_BATCH_DATABASE={_redacted(url)!r}: expected sqlite:///path/to/results.db "
                "or postgresql://user:password@host:5432/db"
            )
        with self._transaction():
            self._connection.execute(SCHEMA)

    def upsert(self, *, source: str, model: str, version: str, generation: str, rows: list[tuple[int, str]]) -> None:
        """Write ``(row number, prediction JSON)`` rows in one transaction."""
        now = time.time()
        values = [(source, number, model, version, generation, text, now) for number, text in rows]
        with self._lock:
            if isinstance(self._connection, sqlite3.Connection):
                with self._connection:
                    self._connection.executemany(self._upsert, values)
                return
            import psycopg

            if self._connection.closed:
                self._connection = _postgres(self.url)  # the last one broke: a new one, or StoreUnavailable
            try:
                with self._connection.transaction(), self._connection.cursor() as cursor:
                    cursor.executemany(self._upsert, values)
            except psycopg.OperationalError as exc:
                # The server went away mid-job: this delivery fails (and is retried), the next reconnects.
                self._connection.close()
                raise StoreUnavailable(f"results database {_redacted(self.url)}: {str(exc).splitlines()[0]}") from None

    def _transaction(self) -> Any:
        """Commit on success, roll back on error (psycopg's ``with connection`` would also close it)."""
        if isinstance(self._connection, sqlite3.Connection):
            return self._connection
        return self._connection.transaction()

    def close(self) -> None:
        self._connection.close()


def _use_write_ahead_log(connection: sqlite3.Connection, *, within_s: float = 30.0) -> None:
    """Switch the file to WAL (readers never block the writer), waiting out other openers.

    Switching needs the file to itself, and SQLite answers "database is locked" at once instead of
    waiting ``timeout`` when another connection is opening it too (several batch workers starting
    together on a new file): retried here. The mode is stored in the file, so later opens only read it.
    """
    deadline = time.monotonic() + within_s
    pause = 0.005
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def _postgres(url: str) -> Any:
    try:
        import psycopg
    except ImportError:
        raise ContractError("a postgresql:// results database needs psycopg: pip install 'modelfn[postgres]'") from None
    try:
        return psycopg.connect(url, connect_timeout=10)
    except psycopg.OperationalError as exc:
        # Unreachable now (or refused): the event is delivered again later.
        raise StoreUnavailable(f"results database {_redacted(url)} unavailable: {str(exc).splitlines()[0]}") from None


def _redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
