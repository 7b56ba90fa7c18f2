"""The durable store of a sweep: SQLite in WAL mode, one row per trial, keyed by a hash.

* **Keys.** A trial's key hashes its experiment, its full parameters (seed included), the package
  version and the experiment's numerics version (:attr:`Experiment.numerics`, bumped whenever
  the experiment's numbers change): a result of older code is kept but never reused.
* **One transaction a trial.** Each result is written as it arrives in its own transaction, so
  a sweep killed at any moment loses at most the trials in flight; rerunning it skips every
  stored key (resume). A stored ``done`` row is never overwritten; a ``failed`` row is replaced
  only by ``sweep --retry-failed`` (its ``attempts`` grows).
* **Several sweeps on one store: claims.** Before running a trial a sweep claims its key in the
  ``claims`` table, in one ``BEGIN IMMEDIATE`` transaction that also checks the key is not
  stored yet; a key claimed by a live owner (see :mod:`.claims`) is left to it, a claim of a dead
  one is taken over. Storing the result deletes the claim in the same transaction. Two sweeps on
  one store therefore share the work and never compute a trial twice, except the trials in
  flight in a sweep that died (its claims die with it). This was chosen over a "store is busy"
  lock so that a second sweep (another terminal, another node's job on the same machine) helps.
* **Failures are explicit.** Every SQLite error becomes a :class:`StoreError` with one line
  saying what happened and what to do (read-only, disk full, corrupt, newer schema); the rows
  already stored stay as they are. Stores of schema 1 are upgraded in place when opened for
  writing (columns added); read-only opens (``status``, ``export``) never modify the file.
* **Local filesystems only.** SQLite's WAL needs shared memory and POSIX locks, which network
  filesystems (NFS, SMB, sshfs, 9p, ...) do not provide reliably: a store found on one warns.
* **Provenance.** Each row records the package version, the numerics version and the
  environment it was computed in (Python, numpy, scipy and the BLAS libraries loaded).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import sqlite3
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .._validation import jsonable as _clean
from ..errors import ImplicitBiasError
from .claims import filesystem_type, is_network_filesystem, owner_alive

FORMAT = "implicit-bias-store"
SCHEMA = "2"
TRIAL_STATES = ("done", "failed")  # a trial's own state; a result's numerical status is in its record
LEASE_S = 600.0  # a claim from another host counts this long after its owner last stored a result
_IN_CHUNK = 500  # keys per "IN (...)" query (SQLite's parameter limit is 999 on old builds)
_TRIALS = ("CREATE TABLE trials (key TEXT PRIMARY KEY, experiment TEXT NOT NULL, params TEXT NOT NULL,"
           " status TEXT NOT NULL, result TEXT, error TEXT, version TEXT, wall_s REAL, finished_at REAL,"
           " numerics INTEGER, environment INTEGER, attempts INTEGER NOT NULL DEFAULT 1)")
_UPGRADE_1_TO_2 = [
    "ALTER TABLE trials ADD COLUMN numerics INTEGER",
    "ALTER TABLE trials ADD COLUMN environment INTEGER",
    "ALTER TABLE trials ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1",
]
_SCHEMA_2_TABLES = [
    "CREATE TABLE IF NOT EXISTS environments (id INTEGER PRIMARY KEY, description TEXT UNIQUE NOT NULL)",
    "CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL)",
]
_WARNED: set[str] = set()


class StoreError(ImplicitBiasError, ValueError):
    """The store file is unreadable, read-only, full, corrupt, or not an implicit-bias store."""


class StoreWarning(UserWarning):
    """The store works but may not be safe (e.g. it lives on a network filesystem)."""


@functools.cache  # asked once per stored trial: importlib.metadata scans sys.path each time (~0.7 ms)
def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("implicit-bias")
    except PackageNotFoundError:  # running from a source tree
        return "0+unknown"


def trial_key(experiment: str, params: dict, version: str | None = None, numerics: int | None = None) -> str:
    """sha256 of the experiment, its full parameters (seed included), the package version and the
    experiment's numerics version (default: the registered one)."""
    if numerics is None:
        from .registry import get_experiment

        numerics = get_experiment(experiment).numerics
    payload = json.dumps({"experiment": experiment, "params": params, "version": version or package_version(),
                          "numerics": numerics}, sort_keys=True, default=repr)
    return hashlib.sha256(payload.encode()).hexdigest()


def _explain(exc: sqlite3.Error, path: Path, action: str) -> StoreError:
    """One line saying what an SQLite error means for the store and what to do."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    said = f"(SQLite says: {exc})"
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")):
        text = (f"the store {path} is read-only {said}: make it and its folder writable, or sweep into "
                f"another --store")
    elif name.startswith(("SQLITE_FULL", "SQLITE_IOERR")):
        text = (f"cannot {action} the store {path}: the disk is full or failing {said}; the trials already "
                f"stored are kept: free space and rerun to resume")
    elif name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        text = (f"{path} is corrupt or not an implicit-bias store {said}; restore it from a backup "
                f"(sqlite3 {path.name} .recover salvages what it can)")
    elif name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        text = f"the store {path} stayed locked by another process for 30 s {said}; retry when it is idle"
    else:
        text = f"cannot {action} the store {path} {said}"
    return StoreError(text)


def _environment_id(db, description: str) -> int:
    db.execute("INSERT OR IGNORE INTO environments (description) VALUES (?)", (description,))
    return db.execute("SELECT id FROM environments WHERE description = ?", (description,)).fetchone()[0]


@dataclass(frozen=True)
class StoredTrial:
    key: str
    experiment: str
    params: dict
    status: str  # "done" | "failed": the trial's state (TRIAL_STATES), not a numerical status
    result: dict | None
    error: str | None
    wall_s: float


class SQLiteStore:
    """Open (or create) a store. Raises :class:`StoreError` on a foreign, corrupt, read-only (when
    writing), or newer-schema file. ``readonly=True`` never changes the file."""

    def __init__(self, path: str | os.PathLike, *, create: bool = True, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        if not self.path.exists() and (not create or readonly):
            raise StoreError(f"no store at {self.path}")
        if self.path.exists() and self.path.is_dir():
            raise StoreError(f"{self.path} is a directory, not a store file")
        self._warn_if_remote()
        try:
            if not readonly:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = self._connect()
        except (sqlite3.Error, OSError) as exc:
            if isinstance(exc, sqlite3.Error):
                raise _explain(exc, self.path, "open") from exc
            raise StoreError(f"cannot open the store {self.path}: {exc}") from exc
        try:
            self._open_retrying(create)
        except BaseException:
            self.db.close()  # leave a foreign file as we found it, and no connection behind
            raise

    def _open_retrying(self, create: bool, patience_s: float = 30.0) -> None:
        """:meth:`_open`, again while another process holds the lock it needs. Switching a new store to
        WAL needs an exclusive lock, and SQLite answers "database is locked" at once, without waiting
        out the timeout, when two sweeps create one store together (1 start in ~12 failed so)."""
        deadline = time.monotonic() + patience_s
        while True:
            try:
                with self._guard("open"):
                    return self._open(create)
            except StoreError as exc:
                name = getattr(exc.__cause__, "sqlite_errorname", "") or ""
                if not name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01 + 0.04 * random.random())  # desynchronise the contenders

    def _connect(self) -> sqlite3.Connection:
        if not self.readonly:
            return sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
        wal = Path(f"{self.path}-wal")
        if not os.access(self.path.parent, os.W_OK) and not wal.exists():
            uri += "&immutable=1"  # nobody can write without the -wal file: the file cannot change
        return sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)

    def _warn_if_remote(self) -> None:
        kind = filesystem_type(self.path.parent if not self.path.exists() else self.path)
        if is_network_filesystem(kind) and str(self.path) not in _WARNED:
            _WARNED.add(str(self.path))
            warnings.warn(f"the store {self.path} is on a network filesystem ({kind}): SQLite's WAL needs a local "
                          f"disk; concurrent sweeps may corrupt it. Keep stores on a local disk.", StoreWarning,
                          stacklevel=3)

    @contextmanager
    def _guard(self, action: str):
        """Turn any SQLite error into one clear :class:`StoreError`."""
        try:
            yield
        except sqlite3.Error as exc:
            if self.db.in_transaction:
                try:
                    self.db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise _explain(exc, self.path, action) from exc

    def _open(self, create: bool) -> None:
        # Identify the file (read only) before changing anything in it: switching a foreign
        # database to WAL would modify another program's file.
        try:
            tables = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            if (getattr(exc, "sqlite_errorname", "") or "").startswith("SQLITE_NOTADB"):
                raise StoreError(f"{self.path} is not an implicit-bias store (SQLite says: {exc})") from exc
            raise
        if not tables:
            if not create or self.readonly:
                raise StoreError(f"{self.path} is empty, not an implicit-bias store")
        elif "meta" not in tables or "trials" not in tables:
            raise StoreError(f"{self.path} is an SQLite database of another program (tables: {sorted(tables)})")
        else:
            self.schema = self._check_meta()
            check = self.db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise StoreError(f"{self.path} is corrupt (SQLite's check: {check}); restore it from a backup "
                                 f"(sqlite3 {self.path.name} .recover salvages what it can)")
        if self.readonly:
            return
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        if not tables:
            self._create()
        elif self.schema == "1":
            self._upgrade()
        self.schema = self._check_meta()

    def _check_meta(self) -> str:
        try:
            meta = dict(self.db.execute("SELECT key, value FROM meta"))
        except sqlite3.DatabaseError as exc:  # a foreign 'meta' table of another shape
            raise StoreError(f"{self.path} is not an implicit-bias store (SQLite says: {exc})") from exc
        if meta.get("format") != FORMAT:
            raise StoreError(f"{self.path} is not an implicit-bias store (format {meta.get('format')!r})")
        schema = meta.get("schema")
        if schema not in ("1", SCHEMA):
            newer = isinstance(schema, str) and schema.isdigit() and int(schema) > int(SCHEMA)
            raise StoreError(f"{self.path} has store schema {schema!r}; this version reads up to {SCHEMA!r}"
                             + (": it was written by a newer implicit-bias, upgrade to read it" if newer else ""))
        return schema

    def _create(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self.db.execute(_TRIALS.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
        for statement in _SCHEMA_2_TABLES:
            self.db.execute(statement)
        self.db.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)",
                            [("format", FORMAT), ("schema", SCHEMA), ("created_by", package_version())])
        self.db.execute("COMMIT")

    def _upgrade(self) -> None:
        """Schema 1 -> 2 in one transaction: add the columns and tables, keep every row."""
        self.db.execute("BEGIN IMMEDIATE")
        if self._check_meta() == "1":  # another process may have upgraded it meanwhile
            for statement in _UPGRADE_1_TO_2 + _SCHEMA_2_TABLES:
                self.db.execute(statement)
            self.db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA,))
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------ writing

    def claim(self, keys: list[str], owner: str, retry_failed: bool = False) -> tuple[list, list, list]:
        """Claim the keys neither stored nor held by a live owner, in one transaction.

        Returns ``(claimed, stored, busy)``: keys now ours, keys already stored (``failed`` ones
        count as stored unless ``retry_failed``), keys another live sweep holds.
        """
        now = time.time()
        claimed, stored, busy = [], [], []
        with self._guard("claim trials in"):
            self.db.execute("BEGIN IMMEDIATE")
            for start in range(0, len(keys), _IN_CHUNK):
                chunk = keys[start:start + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                states = dict(self.db.execute(f"SELECT key, status FROM trials WHERE key IN ({marks})", chunk))
                holders = {k: (o, e) for k, o, e in
                           self.db.execute(f"SELECT key, owner, expires_at FROM claims WHERE key IN ({marks})", chunk)}
                mine = []
                for key in chunk:
                    if key in states and not (retry_failed and states[key] == "failed"):
                        stored.append(key)
                    elif key in holders and holders[key][0] != owner and owner_alive(*holders[key], now):
                        busy.append(key)
                    else:
                        mine.append(key)
                self.db.executemany("INSERT OR REPLACE INTO claims VALUES (?, ?, ?)",
                                    [(key, owner, now + LEASE_S) for key in mine])
                claimed += mine
            self.db.execute("COMMIT")
        return claimed, stored, busy

    def release(self, owner: str) -> None:
        """Drop every claim of ``owner`` (a sweep ending)."""
        with self._guard("release claims in"):
            self.db.execute("DELETE FROM claims WHERE owner = ?", (owner,))

    def put(self, key: str, experiment: str, params: dict, status: str, result: dict | None, error: str | None,
            wall_s: float, *, numerics: int | None = None, environment: str | None = None,
            owner: str | None = None) -> bool:
        """Store one trial in one transaction (a new row, or replacing a ``failed`` one), drop its
        claim and renew the owner's leases; False when a ``done`` row was already stored."""
        if status not in TRIAL_STATES:
            raise ValueError(f"a trial's state is one of {TRIAL_STATES}; got {status!r}")
        row = (key, experiment, json.dumps(_clean(params), sort_keys=True), status,
               None if result is None else json.dumps(_clean(result), sort_keys=True), error, package_version(),
               wall_s, time.time(), numerics)
        with self._guard("write to"):
            self.db.execute("BEGIN IMMEDIATE")
            env = None if environment is None else _environment_id(self.db, environment)
            cursor = self.db.execute(
                "INSERT INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) ON CONFLICT(key) DO UPDATE SET"
                " status = excluded.status, result = excluded.result, error = excluded.error,"
                " version = excluded.version, wall_s = excluded.wall_s, finished_at = excluded.finished_at,"
                " numerics = excluded.numerics, environment = excluded.environment, attempts = attempts + 1"
                " WHERE trials.status = 'failed'", (*row, env))
            if owner is not None:
                self.db.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key, owner))
                self.db.execute("UPDATE claims SET expires_at = ? WHERE owner = ?", (time.time() + LEASE_S, owner))
            self.db.execute("COMMIT")
        return cursor.rowcount == 1

    # ------------------------------------------------------------------------------ reading

    def _rows(self, query: str, args=()) -> list:
        with self._guard("read"):
            return self.db.execute(query, args).fetchall()

    def keys(self) -> set[str]:
        return {row[0] for row in self._rows("SELECT key FROM trials")}

    def states(self) -> dict[str, str]:
        """key -> the trial's state (``done`` or ``failed``)."""
        return dict(self._rows("SELECT key, status FROM trials"))

    def trials(self, experiment: str | None = None) -> list[StoredTrial]:
        query = "SELECT key, experiment, params, status, result, error, wall_s FROM trials"
        rows = self._rows(query + (" WHERE experiment = ?" if experiment else "") + " ORDER BY rowid",
                          (experiment,) if experiment else ())
        return [StoredTrial(k, e, json.loads(p), s, None if r is None else json.loads(r), err, w)
                for k, e, p, s, r, err, w in rows]

    def counts(self) -> dict[str, int]:
        return dict(self._rows("SELECT status, COUNT(*) FROM trials GROUP BY status"))

    def by_experiment(self) -> list[tuple[str, str, int]]:
        """(experiment, trial state, count) of the stored rows."""
        return self._rows("SELECT experiment, status, COUNT(*) FROM trials GROUP BY 1, 2 ORDER BY 1, 2")

    def integrity(self) -> str:
        return self._rows("PRAGMA integrity_check")[0][0]

    def meta(self) -> dict[str, str]:
        return dict(self._rows("SELECT key, value FROM meta"))

    def result_statuses(self) -> dict[str, int]:
        """Numerical status (implicit_bias.status words) of the ``done`` trials -> count."""
        return dict(self._rows(
            "SELECT COALESCE(json_extract(result, '$.status'), json_extract(result, '$.solver_status'), '-'),"
            " COUNT(*) FROM trials WHERE status = 'done' GROUP BY 1 ORDER BY 2 DESC"))

    def failures(self) -> list[tuple[str, int]]:
        """The first line of each failed trial's error -> count, most frequent first."""
        return self._rows(
            "SELECT substr(error, 1, instr(error || char(10), char(10)) - 1), COUNT(*) FROM trials"
            " WHERE status = 'failed' GROUP BY 1 ORDER BY 2 DESC, 1")

    def versions(self) -> list[tuple[str, str, int | None, int]]:
        """(experiment, package version, numerics version, count) of the stored rows."""
        numerics = "numerics" if self.schema != "1" else "NULL"
        return self._rows(f"SELECT experiment, version, {numerics}, COUNT(*) FROM trials GROUP BY 1, 2, 3")

    def environments(self) -> list[tuple[str, int]]:
        """The environments the trials were computed in (JSON text) -> number of trials."""
        if self.schema == "1":
            return []
        return self._rows("SELECT e.description, COUNT(*) FROM trials t JOIN environments e ON e.id = t.environment"
                          " GROUP BY e.id ORDER BY 2 DESC")

    def live_claims(self) -> dict[str, int]:
        """Owner -> number of keys it holds, for owners still alive (sweeps running now)."""
        if self.schema == "1":
            return {}
        now, out = time.time(), {}
        for owner, expires_at in self._rows("SELECT owner, expires_at FROM claims"):
            if owner_alive(owner, expires_at, now):
                out[owner] = out.get(owner, 0) + 1
        return out

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
        if fmt not in ("csv", "parquet"):
            raise StoreError(f"unknown export format {fmt!r}; use csv or parquet")
        frame = self.dataframe()
        try:
            if fmt == "csv":
                frame.to_csv(tmp, index=False)
            else:
                frame.to_parquet(tmp, index=False)
            os.replace(tmp, out)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write {out}: {exc.strerror or exc}; choose another --out") from exc
        return out
