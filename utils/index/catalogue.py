"""The catalogue of an index: one SQLite file holding every item (stable integer id, path, labels,
content hash, tombstone), the embedded backend's segment files, and the index's metadata (the model
fingerprint, the next id, the build source). Every change is one SQLite transaction (WAL journal,
synchronous=FULL), so a crash leaves the previous or the new state. No Paddle here.
"""
import contextlib
import json
import sqlite3
import threading

from utils.errors import UserError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL, labels TEXT, sha256 TEXT NOT NULL,
    removed INTEGER NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX IF NOT EXISTS items_alive_path ON items(path) WHERE removed = 0;
CREATE TABLE IF NOT EXISTS segments (
    file TEXT PRIMARY KEY, count INTEGER NOT NULL, bytes INTEGER NOT NULL, crc32 INTEGER NOT NULL);
"""


class Catalogue:
    """A thread-safe handle on `catalogue.sqlite` (one connection behind a lock)."""

    def __init__(self, path, create=False):
        self.path = path
        try:
            uri = f"file:{path}" + ("" if create else "?mode=rw")
            self.db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            if create:
                self.db.executescript(SCHEMA)
            self.db.execute("SELECT count(*) FROM items").fetchone()
            self.db.execute("SELECT count(*) FROM segments").fetchone()
        except sqlite3.Error as exc:
            raise UserError(f"{path}: not a readable index catalogue ({exc}); restore the index directory "
                            "from a backup or build it again (scripts/index.py build)")
        self.lock = threading.RLock()

    def close(self):
        with self.lock:
            self.db.close()

    @contextlib.contextmanager
    def transaction(self):
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any error): all or nothing."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    @contextlib.contextmanager
    def reading(self):
        """A consistent read: every SELECT inside sees the same committed state."""
        with self.lock:
            self.db.execute("BEGIN")
            try:
                yield self.db
            finally:
                self.db.execute("COMMIT")

    # ------------------------------------------------------------------ meta
    def get(self, key, default=None):
        with self.lock:
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    @staticmethod
    def put(db, key, value):
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    # ------------------------------------------------------------------ items
    def count(self):
        with self.lock:
            alive, removed = self.db.execute(
                "SELECT coalesce(sum(removed = 0), 0), coalesce(sum(removed = 1), 0) FROM items").fetchone()
        return int(alive), int(removed)

    def alive_paths(self):
        """{path: (id, sha256)} of the items in the index."""
        with self.lock:
            rows = self.db.execute("SELECT path, id, sha256 FROM items WHERE removed = 0").fetchall()
        return {p: (i, h) for p, i, h in rows}

    def items(self, ids):
        """{id: (path, labels list or None, removed)} for the given ids (those that exist)."""
        out = {}
        ids = [int(i) for i in ids]
        with self.lock:
            for start in range(0, len(ids), 500):
                part = ids[start:start + 500]
                marks = ",".join("?" * len(part))
                for i, path, labels, removed in self.db.execute(
                        f"SELECT id, path, labels, removed FROM items WHERE id IN ({marks})", part):
                    out[i] = (path, json.loads(labels) if labels is not None else None, bool(removed))
        return out

    def removed_ids(self, db=None):
        return [r[0] for r in (db or self.db).execute("SELECT id FROM items WHERE removed = 1")]
