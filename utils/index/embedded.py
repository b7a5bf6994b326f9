"""The embedded backend: packed codes in append-only segment files, searched by utils.retrieval.

A segment file is a 20-byte header (magic `HIDXSEG1`, bits uint32, count uint64), the ids (int64,
little-endian) and the packed codes (uint8, count x ceil(bits/8)). The catalogue lists every segment
with its size and CRC-32, so a file truncated or changed by hand is found when the index is opened for
search (a one-line error naming the file), and a file it does not list (a crash between writing the file
and the commit) is ignored until `compact` deletes it.
"""
import os
import struct
import threading
import zlib

import numpy as np

from utils.errors import UserError
from utils.fileio import atomic_path
from utils.index import BACKENDS, Backend, Catalogue, crash_point

MAGIC = b"HIDXSEG1"
HEADER = struct.Struct("<8sIQ")


def segment_bytes(count, nbytes):
    return HEADER.size + count * (8 + nbytes)


class Snapshot:
    """Alive items at one moment, ready to search: ids ascending, their packed codes."""

    def __init__(self, ids, packed, bit, engine="auto"):
        from utils.retrieval import HammingIndex

        order = np.argsort(ids, kind="stable")
        self.ids, self.packed, self.bit = ids[order], packed[order], bit
        self.engine = engine
        self._index = HammingIndex(self.packed, bits=bit, backend=engine) if len(self.ids) else None

    def __len__(self):
        return len(self.ids)

    @property
    def memory_bytes(self):
        return int(self.ids.nbytes + self.packed.nbytes)

    def search(self, packed_queries, k):
        """→ (distances int32 (nq, k'), ids int64 (nq, k')), by (distance, id)."""
        if self._index is None:
            raise UserError("the index is empty: add images first (scripts/index.py add)")
        dist, pos = self._index.search(np.ascontiguousarray(packed_queries, np.uint8), k)
        return dist, self.ids[pos]


class EmbeddedStore:
    def __init__(self, d, meta, catalogue, bit):
        self.dir, self.catalogue, self.bit = d, catalogue, bit
        self.nbytes = (bit + 7) // 8
        self._cache, self._lock = {}, threading.Lock()  # segment name -> (ids, packed); files never change

    def close(self):
        self._cache.clear()

    def recover(self):
        pass  # nothing to redo: a file the catalogue does not list is ignored

    # ------------------------------------------------------------------ writing
    def write(self, ids, packed, tag="seg"):
        """Write one segment file (atomically) → its catalogue row."""
        name = f"{tag}-{int(ids[0]) if len(ids) else 0:012d}-{os.urandom(4).hex()}.bin"
        body = HEADER.pack(MAGIC, self.bit, len(ids)) + np.asarray(ids, "<i8").tobytes() + packed.tobytes()
        with atomic_path(self.dir.segment(name)) as tmp:
            with open(tmp, "wb") as f:
                f.write(body)
        return name, len(ids), len(body), zlib.crc32(body)

    def commit(self, db, token):
        db.execute("INSERT INTO segments(file, count, bytes, crc32) VALUES (?, ?, ?, ?)", token)

    def abandon(self, token):
        try:
            os.remove(self.dir.segment(token[0]))
        except OSError:
            pass

    def delete(self, ids):
        pass  # the tombstones in the catalogue are enough; compact drops the rows

    # ------------------------------------------------------------------ reading
    def _load(self, name, count, size, crc):
        with self._lock:
            if name in self._cache:
                return self._cache[name]
        path = self.dir.segment(name)
        try:
            with open(path, "rb") as f:
                body = f.read()
        except FileNotFoundError:
            raise UserError(f"{path}: segment file listed in the catalogue is missing; the index is damaged: "
                            "restore it from a backup or build it again")
        if len(body) != size or segment_bytes(count, self.nbytes) != size:
            raise UserError(f"{path}: segment file is truncated or extended ({len(body)} bytes, expected {size}); "
                            "the index is damaged: restore the file from a backup or build the index again")
        magic, bit, n = HEADER.unpack_from(body)
        if magic != MAGIC or bit != self.bit or n != count or zlib.crc32(body) != crc:
            raise UserError(f"{path}: segment file does not match its checksum (changed by hand?); the index "
                            "is damaged: restore the file from a backup or build the index again")
        ids = np.frombuffer(body, "<i8", count, HEADER.size).astype(np.int64)
        packed = np.frombuffer(body, np.uint8, count * self.nbytes, HEADER.size + 8 * count)
        packed = packed.reshape(count, self.nbytes)
        with self._lock:
            self._cache[name] = (ids, packed)
        return ids, packed

    def _state(self, db):
        segments = db.execute("SELECT file, count, bytes, crc32 FROM segments ORDER BY file").fetchall()
        return segments, np.asarray(self.catalogue.removed_ids(db), np.int64)

    def _alive(self, segments, removed):
        parts = [self._load(*row) for row in segments]
        if not parts:
            return np.zeros(0, np.int64), np.zeros((0, self.nbytes), np.uint8)
        ids = np.concatenate([p[0] for p in parts])
        packed = np.concatenate([p[1] for p in parts])
        if len(removed):
            keep = ~np.isin(ids, removed)
            ids, packed = ids[keep], packed[keep]
        return ids, packed

    def snapshot(self, engine="auto"):
        with self.catalogue.reading() as db:
            segments, removed = self._state(db)
        return Snapshot(*self._alive(segments, removed), self.bit, engine)

    # ------------------------------------------------------------------ maintenance
    def _replace_all(self, db, new_rows, tag):
        """Inside a transaction: the segments become `new_rows`; tombstoned items are dropped."""
        db.execute("DELETE FROM items WHERE removed = 1")
        db.execute("DELETE FROM segments")
        db.executemany("INSERT INTO segments(file, count, bytes, crc32) VALUES (?, ?, ?, ?)", new_rows)

    def _delete_unlisted(self):
        with self.catalogue.lock:
            listed = {r[0] for r in self.catalogue.db.execute("SELECT file FROM segments")}
        for name in os.listdir(self.dir.segments):
            if name not in listed:
                try:
                    os.remove(self.dir.segment(name))
                except OSError:
                    pass
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if k in listed}

    def compact(self):
        with self.catalogue.transaction() as db:
            segments, removed = self._state(db)
            ids, packed = self._alive(segments, removed)
            order = np.argsort(ids, kind="stable")
            ids, packed = ids[order], packed[order]
            rows = [self.write(ids, packed, "cmp")] if len(ids) else []
            crash_point("compact:stored")
            self._replace_all(db, rows, "cmp")
        crash_point("compact:committed")
        self._delete_unlisted()
        return len(ids), len(removed)

    def rebuild(self, fingerprint, encode_items, log=print, chunk=1024):
        with self.catalogue.transaction() as db:
            rows = db.execute("SELECT id, path FROM items WHERE removed = 0 ORDER BY id").fetchall()
            new = []
            for start in range(0, len(rows), chunk):
                part = rows[start:start + chunk]
                ids = np.asarray([r[0] for r in part], np.int64)
                packed = np.ascontiguousarray(encode_items(ids, [r[1] for r in part]), np.uint8)
                new.append(self.write(ids, packed, "rbd"))
            crash_point("rebuild:stored")
            self._replace_all(db, new, "rbd")
            Catalogue.put(db, "fingerprint", fingerprint)
        crash_point("rebuild:committed")
        self._delete_unlisted()
        return len(rows)

    def info(self, n_rows):
        with self.catalogue.lock:
            n_seg, n_codes = self.catalogue.db.execute(
                "SELECT count(*), coalesce(sum(count), 0) FROM segments").fetchone()
        return {"segments": int(n_seg), "memory_bytes": int(n_codes) * (8 + self.nbytes),
                "engine": "utils.retrieval (exact)"}


BACKENDS.add(Backend("embedded", "segment files + SQLite catalogue, searched by utils.retrieval",
                     EmbeddedStore))
