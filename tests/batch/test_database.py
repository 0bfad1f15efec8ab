"""Batch results in SQLite and in a real PostgreSQL server (a throwaway cluster started here)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import free_port

from modelfn.batch.database import ResultsDatabase
from modelfn.errors import ContractError, StoreUnavailable

ROWS = [(2, '{"label": 1}'), (3, '{"label": 7}')]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A PostgreSQL cluster in a temporary folder, on a free port; its DSN."""
    initdb = shutil.which("initdb") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)
    if initdb is None:
        pytest.skip("PostgreSQL's server programs (initdb, pg_ctl) are not installed: apt-get install postgresql")
    bin_dir = Path(initdb).resolve().parent
    # The server refuses to run as root: as root, run it as the postgres user.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="modelfn-pg-"))
    if as_user:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", free_port()
    run = lambda *args: subprocess.run([*as_user, *args], check=True, capture_output=True, text=True)  # noqa: E731
    run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_sqlite_upserts_one_row_per_key(tmp_path: Path) -> None:
    database = ResultsDatabase(f"sqlite:///{tmp_path}/r.db")
    for generation in ("1", "2"):  # the same rows again: updated, not added
        database.upsert(source="gs://b/incoming/a.csv", model="digits", version="1", generation=generation, rows=ROWS)
    database.upsert(source="gs://b/incoming/a.csv", model="digits", version="2", generation="2", rows=ROWS[:1])
    database.close()
    with sqlite3.connect(tmp_path / "r.db") as connection:
        rows = connection.execute(
            "SELECT row_number, version, generation FROM modelfn_predictions ORDER BY 2, 1"
        ).fetchall()
    assert rows == [(2, "1", "2"), (3, "1", "2"), (2, "2", "2")]


def test_workers_opening_a_new_sqlite_file_together_all_get_it(tmp_path: Path) -> None:
    # Beam and Spark start several workers at once on the same new file. SQLite refused the switch to
    # WAL at once ("database is locked") to one of eight openers in about one new file in ten.
    failures: list[str] = []

    def open_and_close(url: str) -> None:
        try:
            ResultsDatabase(url).close()
        except sqlite3.OperationalError as exc:
            failures.append(str(exc))

    for trial in range(60):
        url = f"sqlite:///{tmp_path}/{trial}/r.db"
        workers = [threading.Thread(target=open_and_close, args=(url,)) for _ in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert failures == []


def test_postgresql_upserts_one_row_per_key(postgres: str) -> None:
    import psycopg

    database = ResultsDatabase(postgres)
    source = f"s3://b/incoming/{time.time_ns()}.csv"
    for generation in ("1", "2"):
        database.upsert(source=source, model="digits", version="1", generation=generation, rows=ROWS)
    database.close()
    with psycopg.connect(postgres) as connection:
        rows = connection.execute(
            "SELECT row_number, generation, prediction FROM modelfn_predictions WHERE source = %s ORDER BY 1", (source,)
        ).fetchall()
    assert rows == [(2, "2", '{"label": 1}'), (3, "2", '{"label": 7}')]


def test_an_unreachable_postgresql_is_worth_a_retry_and_hides_the_password() -> None:
    url = f"postgresql://writer:s3cret@127.0.0.1:{free_port()}/results"
    with pytest.raises(StoreUnavailable) as caught:
        ResultsDatabase(url)
    assert "s3cret" not in caught.value.message and "writer:***@" in caught.value.message


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite://relative.db", "results.db"])
def test_other_urls_are_refused_clearly(url: str) -> None:
    with pytest.raises(ContractError, match=r"expected sqlite:///path/to/results\.db or postgresql://"):
        ResultsDatabase(url)
