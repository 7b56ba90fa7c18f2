"""The durable store of a sweep: SQLite in WAL mode, one row per trial, keyed by a hash.

One writer (the driving process) inserts each result as it arrives with ``INSERT OR IGNORE``
in its own transaction, so a sweep killed at any moment loses at most the trials in flight,
and rerunning it skips every stored key (resume).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .._validation import jsonable as _clean
from ..errors import ImplicitBiasError

FORMAT = "implicit-bias-store"
SCHEMA = "1"


class StoreError(ImplicitBiasError, ValueError):
    """The store file is unreadable, corrupt, or not an implicit-bias store."""


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("implicit-bias")
    except PackageNotFoundError:  # running from a source tree
        return "0+unknown"


def trial_key(experiment: str, params: dict, version: str | None = None) -> str:
    """sha256 of the experiment, its full parameters (seed included) and the package version."""
    payload = json.dumps({"experiment": experiment, "params": params, "version": version or package_version()},
                         sort_keys=True, default=repr)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class StoredTrial:
    key: str
    experiment: str
    params: dict
    status: str  # "done" | "failed"
    result: dict | None
    error: str | None
    wall_s: float


class SQLiteStore:
    """Open (or create) a store. Raises :class:`StoreError` on a foreign or corrupt file."""

    def __init__(self, path: str | os.PathLike, *, create: bool = True):
        self.path = Path(path)
        if not self.path.exists() and not create:
            raise StoreError(f"no store at {self.path}")
        if self.path.exists() and self.path.is_dir():
            raise StoreError(f"{self.path} is a directory, not a store file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store {self.path} (SQLite says: {exc})") from exc
        try:
            self._open(create)
        except BaseException:
            self.db.close()  # leave a foreign file as we found it, and no connection behind
            raise

    def _open(self, create: bool) -> None:
        # Identify the file (read only) before changing anything in it: switching a foreign
        # database to WAL would modify another program's file.
        try:
            tables = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not an implicit-bias store (SQLite says: {exc})") from exc
        if not tables:
            if not create:
                raise StoreError(f"{self.path} is empty, not an implicit-bias store")
        elif "meta" not in tables or "trials" not in tables:
            raise StoreError(f"{self.path} is an SQLite database of another program (tables: {sorted(tables)})")
        else:
            self._check_meta()
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        if not tables:
            self._create()
            self._check_meta()

    def _check_meta(self) -> None:
        try:
            meta = dict(self.db.execute("SELECT key, value FROM meta"))
        except sqlite3.DatabaseError as exc:  # a foreign 'meta' table of another shape
            raise StoreError(f"{self.path} is not an implicit-bias store (SQLite says: {exc})") from exc
        if meta.get("format") != FORMAT:
            raise StoreError(f"{self.path} is not an implicit-bias store (format {meta.get('format')!r})")
        if meta.get("schema") != SCHEMA:
            raise StoreError(f"{self.path} has store schema {meta.get('schema')!r}; this version reads {SCHEMA!r}")

    def _create(self) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS trials (key TEXT PRIMARY KEY, experiment TEXT NOT NULL, params TEXT NOT NULL,"
                " status TEXT NOT NULL, result TEXT, error TEXT, version TEXT, wall_s REAL, finished_at REAL)"
            )
            self.db.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", [("format", FORMAT), ("schema", SCHEMA)])
            self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def keys(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT key FROM trials")}

    def put(self, key: str, experiment: str, params: dict, status: str, result: dict | None, error: str | None,
            wall_s: float) -> bool:
        """Insert one trial (one transaction); False when the key was already stored."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, experiment, json.dumps(_clean(params), sort_keys=True), status,
             None if result is None else json.dumps(_clean(result), sort_keys=True), error, package_version(),
             wall_s, time.time()),
        )
        return cursor.rowcount == 1

    def trials(self, experiment: str | None = None) -> list[StoredTrial]:
        query = "SELECT key, experiment, params, status, result, error, wall_s FROM trials"
        rows = self.db.execute(query + (" WHERE experiment = ?" if experiment else "") + " ORDER BY rowid",
                               (experiment,) if experiment else ())
        return [StoredTrial(k, e, json.loads(p), s, None if r is None else json.loads(r), err, w)
                for k, e, p, s, r, err, w in rows]

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM trials GROUP BY status"))

    def integrity(self) -> str:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0]

    def dataframe(self, experiment: str | None = None):
        """One row per trial: its parameters, its metrics, status, error and wall time.

        A metric named like one of the trial's columns (``key``, ``experiment``, ``status``,
        ``error``, ``trial_wall_s``) is renamed ``result_<name>``.
        """
        import pandas as pd

        rows = []
        for trial in self.trials(experiment):
            row = {"key": trial.key, "experiment": trial.experiment, "status": trial.status, "error": trial.error,
                   "trial_wall_s": trial.wall_s, **trial.params}
            for name, value in (trial.result or {}).items():
                if name in trial.params:
                    continue  # the result repeats its parameters
                # never shadow the trial's own columns (the sparse result has its solver 'status')
                column = f"result_{name}" if name in row else name
                row[column] = json.dumps(value) if isinstance(value, (dict, list)) else value
            rows.append(row)
        return pd.DataFrame(rows)

    def export(self, out: str | os.PathLike, fmt: str = "csv") -> Path:
        """Write CSV or Parquet under a hidden temporary name, then rename (never a half file)."""
        out = Path(out)
        tmp = out.with_name(f".{out.name}.tmp")
        frame = self.dataframe()
        if fmt == "csv":
            frame.to_csv(tmp, index=False)
        elif fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            raise StoreError(f"unknown export format {fmt!r}; use csv or parquet")
        os.replace(tmp, out)
        return out
