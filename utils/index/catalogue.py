"""The catalogue of an index: one SQLite file holding every item (stable integer id, path, labels,
content hash, tombstone), the embedded backend's segment files, and the index's metadata (the model
fingerprint, the next id, the image root, the build source, the generation). Every change is one SQLite
transaction (WAL journal, synchronous=FULL), so a crash leaves the previous or the new state. No Paddle here.

Several processes may hold the same catalogue: writes serialise through SQLite's write lock
(`BEGIN IMMEDIATE`, waiting up to `timeout` seconds for another writer), and every write transaction
bumps the `generation` in `meta`, so a reader learns cheaply that something changed. Reads go through a
second connection: in WAL mode they see the last committed state and never wait for a writer, in this
process or another.
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
class IndexBusy(UserError):
    """A write that waited too long for another process's write (the service answers 503)."""


WRITE_TIMEOUT = 120.0  # seconds a write waits for another process's write (a rebuild holds it longest)


class Catalogue:
    """A thread-safe handle on `catalogue.sqlite`: a write connection behind `lock`, a read connection
    behind `rlock`."""

    def __init__(self, path, create=False, timeout=WRITE_TIMEOUT):
        self.path, self.timeout = path, timeout
        self.db = self.rdb = None
        try:
            uri = f"file:{path}" + ("" if create else "?mode=rw")
            self.db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None,
                                      timeout=timeout)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            if create:
                self.db.executescript(SCHEMA)
            self.db.execute("SELECT count(*) FROM items").fetchone()
            self.db.execute("SELECT count(*) FROM segments").fetchone()
            self.rdb = sqlite3.connect(f"file:{path}?mode=rw", uri=True, check_same_thread=False,
                                       isolation_level=None, timeout=timeout)
        except sqlite3.Error as exc:
            self._close_connections()
            raise UserError(f"{path}: not a readable index catalogue ({exc}); restore the index directory "
                            "from a backup or build it again (scripts/index.py build)")
        self.lock = threading.RLock()
        self.rlock = threading.RLock()

    def _close_connections(self):
        for conn in (self.rdb, self.db):
            if conn is not None:
                conn.close()

    def close(self):
        with self.lock, self.rlock:
            self._close_connections()

    @contextlib.contextmanager
    def transaction(self):
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any error): all or nothing. Waits for another
        process's write; bumps the generation."""
        with self.lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                raise IndexBusy(f"{self.path}: another process has held the index's write lock for more than "
                                f"{self.timeout:g} s (a --rebuild?); try again when it is done")
            try:
                yield self.db
                row = self.db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
                self.put(self.db, "generation", (json.loads(row[0]) if row else 0) + 1)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    @contextlib.contextmanager
    def reading(self):
        """A consistent read of the last committed state: every SELECT inside sees the same one."""
        with self.rlock:
            self.rdb.execute("BEGIN")
            try:
                yield self.rdb
            finally:
                self.rdb.execute("COMMIT")

    # ------------------------------------------------------------------ meta
    @staticmethod
    def read(db, key, default=None):
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def get(self, key, default=None):
        with self.rlock:
            return self.read(self.rdb, key, default)

    def generation(self):
        """A number that grows with every committed write (of any process)."""
        return int(self.get("generation", 0))

    @staticmethod
    def put(db, key, value):
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    # ------------------------------------------------------------------ items
    def count(self):
        with self.rlock:
            alive, removed = self.rdb.execute(
                "SELECT coalesce(sum(removed = 0), 0), coalesce(sum(removed = 1), 0) FROM items").fetchone()
        return int(alive), int(removed)

    def alive_paths(self):
        """{path: (id, sha256)} of the items in the index (paths as stored)."""
        with self.rlock:
            rows = self.rdb.execute("SELECT path, id, sha256 FROM items WHERE removed = 0").fetchall()
        return {p: (i, h) for p, i, h in rows}

    def items(self, ids):
        """{id: (path, labels list or None, removed)} for the given ids (those that exist)."""
        out = {}
        ids = [int(i) for i in ids]
        with self.rlock:
            for start in range(0, len(ids), 500):
                part = ids[start:start + 500]
                marks = ",".join("?" * len(part))
                for i, path, labels, removed in self.rdb.execute(
                        f"SELECT id, path, labels, removed FROM items WHERE id IN ({marks})", part):
                    out[i] = (path, json.loads(labels) if labels is not None else None, bool(removed))
        return out

    def alive_keys(self, limit):
        """The stored paths of the first `limit` alive items (by id)."""
        with self.reading() as db:
            return [r[0] for r in db.execute("SELECT path FROM items WHERE removed = 0 ORDER BY id LIMIT ?",
                                             (limit,))]

    def any_alive_relative(self):
        """True when an alive item is stored relative to the image root (not absolute, not under @index/)."""
        with self.reading() as db:
            return db.execute("SELECT 1 FROM items WHERE removed = 0 AND path NOT LIKE '/%' AND "
                              "path NOT LIKE '@index/%' LIMIT 1").fetchone() is not None

    @staticmethod
    def insert_items(db, rows):
        """Inside a transaction: new items, rows of (id, stored path, labels list or None, sha256)."""
        db.executemany("INSERT INTO items(id, path, labels, sha256) VALUES (?, ?, ?, ?)",
                       [(int(i), p, None if lab is None else json.dumps([int(x) for x in lab]), h)
                        for i, p, lab, h in rows])

    @staticmethod
    def tombstone(db, ids):
        """Inside a transaction: mark items removed → the ids this call removed (not those removed before)."""
        return [int(i) for i in ids
                if db.execute("UPDATE items SET removed = 1 WHERE id = ? AND removed = 0", (int(i),)).rowcount]

    @staticmethod
    def all_items(db):
        """Inside a transaction: (id, stored path, removed) of every item, by id."""
        return db.execute("SELECT id, path, removed FROM items ORDER BY id").fetchall()

    @staticmethod
    def respell(db, updates, duplicates):
        """Inside a transaction: new stored paths (rows of (path, id)) and tombstones for `duplicates` (ids),
        the unique index on alive paths rebuilt around the change."""
        db.executemany("UPDATE items SET removed = 1 WHERE id = ?", [(int(i),) for i in duplicates])
        db.execute("DROP INDEX IF EXISTS items_alive_path")
        db.executemany("UPDATE items SET path = ? WHERE id = ?", updates)
        db.execute("CREATE UNIQUE INDEX items_alive_path ON items(path) WHERE removed = 0")

    @staticmethod
    def alive_items(db):
        """(id, stored path) of the alive items, by id."""
        return db.execute("SELECT id, path FROM items WHERE removed = 0 ORDER BY id").fetchall()

    @staticmethod
    def count_alive(db):
        return int(db.execute("SELECT count(*) FROM items WHERE removed = 0").fetchone()[0])

    @staticmethod
    def purge_removed(db, ids=None):
        """Inside a transaction: delete the rows of tombstoned items (all, or those of `ids`)."""
        if ids is None:
            db.execute("DELETE FROM items WHERE removed = 1")
        else:
            db.executemany("DELETE FROM items WHERE id = ? AND removed = 1", [(int(i),) for i in ids])

    # ------------------------------------------------------------------ segments (the embedded backend's files)
    @staticmethod
    def segments(db, below=None):
        """(file, count, bytes, crc32) of the listed segment files, by name (those of fewer than `below` items)."""
        if below is None:
            return db.execute("SELECT file, count, bytes, crc32 FROM segments ORDER BY file").fetchall()
        return db.execute("SELECT file, count, bytes, crc32 FROM segments WHERE count < ? ORDER BY file",
                          (below,)).fetchall()

    @staticmethod
    def segment_names(db):
        return {r[0] for r in db.execute("SELECT file FROM segments")}

    @staticmethod
    def last_segment(db, prefix):
        """The row of the last listed segment whose file name starts with `prefix`, or None."""
        return db.execute("SELECT file, count, bytes, crc32 FROM segments WHERE file LIKE ? ORDER BY file DESC "
                          "LIMIT 1", (prefix + "%",)).fetchone()

    @staticmethod
    def list_segments(db, rows):
        """Inside a transaction: list new segment files, rows of (file, count, bytes, crc32)."""
        db.executemany("INSERT INTO segments(file, count, bytes, crc32) VALUES (?, ?, ?, ?)", rows)

    @staticmethod
    def unlist_segments(db, names=None):
        """Inside a transaction: unlist the segment files `names` (None: all of them)."""
        if names is None:
            db.execute("DELETE FROM segments")
        else:
            db.executemany("DELETE FROM segments WHERE file = ?", [(n,) for n in names])

    @staticmethod
    def segment_totals(db):
        """(segment files, codes in them)."""
        n_seg, n_codes = db.execute("SELECT count(*), coalesce(sum(count), 0) FROM segments").fetchone()
        return int(n_seg), int(n_codes)

    def removed_ids(self, db=None):
        if db is not None:
            return [r[0] for r in db.execute("SELECT id FROM items WHERE removed = 1")]
        with self.rlock:
            return [r[0] for r in self.rdb.execute("SELECT id FROM items WHERE removed = 1")]
