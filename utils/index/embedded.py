"""The embedded backend: packed codes in append-only segment files, searched by utils.retrieval.

A segment file is a 20-byte header (magic `HIDXSEG1`, bits uint32, count uint64), the ids (int64,
little-endian) and the packed codes (uint8, count x ceil(bits/8)). The catalogue lists every segment
with its size and CRC-32, so a file truncated or changed by hand is found when the index is opened for
search (a one-line error naming the file), and a file it does not list (a crash between writing the file
and the commit) is ignored until `compact` deletes it (under the write lock, so never a file another
writer is about to commit; temporary files only when they are an hour old).

Files: `seg-*` (an add), `dlt-*` (the delta segment of small adds: rewritten whole with each add, up to
DELTA_MAX items, the one it replaces deleted after the commit), `cmp-*` (a merge), `rbd-*` (a rebuild).
A compaction writes `cmp-*.bin.pending` outside the lock and renames it inside its commit. A reader that
finds a listed file gone (replaced meanwhile) reads the catalogue again.
"""
import math
import os
import struct
import threading
import time
import zlib

import numpy as np

from utils.errors import UserError
from utils.fileio import atomic_path
from utils.index.catalogue import Catalogue
from utils.index.store import Backend, EmptyIndex, Store, crash_point, register_backend

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
        self.engine, self.generation = engine, None  # generation: the catalogue's, when it was read
        self._index = HammingIndex(self.packed, bits=bit, backend=engine) if len(self.ids) else None
        self._radius, self._radius_lock = None, threading.Lock()

    def __len__(self):
        return len(self.ids)

    @property
    def memory_bytes(self):
        return int(self.ids.nbytes + self.packed.nbytes)

    def search(self, packed_queries, k):
        """→ (distances int32 (nq, k'), ids int64 (nq, k')), by (distance, id)."""
        if self._index is None:
            raise EmptyIndex("the index is empty: add images first (scripts/index.py add)")
        dist, pos = self._index.search(np.ascontiguousarray(packed_queries, np.uint8), k)
        return dist, self.ids[pos]

    def search_radius(self, packed_queries, radius, max_results):
        """→ [RadiusHits] per query with item ids (utils.retrieval.radius: every item within `radius`, by
        (distance, id), at most `max_results`; `total` is exact)."""
        if self._index is None:
            raise EmptyIndex("the index is empty: add images first (scripts/index.py add)")
        with self._radius_lock:  # built on the first radius search of this snapshot
            if self._radius is None:
                from utils.retrieval.radius import RadiusIndex

                self._radius = RadiusIndex(self.packed, self.bit)
        hits = self._radius.search(np.ascontiguousarray(packed_queries, np.uint8), radius, max_results)
        return [h._replace(indices=self.ids[h.indices]) for h in hits]


class MissingSegment(UserError):
    """A segment file the catalogue lists is not on disk (damage, or a compaction that just replaced it)."""


DELTA_MAX = 1024  # items a delta segment takes before it is left as a regular segment
SMALL_SEGMENT = 65536  # segments with fewer items are merged as they pile up (Index.add); larger ones by compact
STALE_SECONDS = 3600  # an unlisted temporary file older than this is a crash's leftover


class EmbeddedStore(Store):
    def __init__(self, d, meta, catalogue, bit):
        self.dir, self.catalogue, self.bit = d, catalogue, bit
        self.nbytes = (bit + 7) // 8
        self._cache, self._lock = {}, threading.Lock()  # segment name -> (ids, packed); files never change

    def close(self):
        self._cache.clear()

    def recover(self, db):
        pass  # nothing to redo: a file the catalogue does not list is ignored

    # ------------------------------------------------------------------ writing
    def _name(self, tag, ids):
        return f"{tag}-{int(ids[0]) if len(ids) else 0:012d}-{os.urandom(4).hex()}.bin"

    def _write_file(self, path, ids, packed):
        body = HEADER.pack(MAGIC, self.bit, len(ids)) + np.asarray(ids, "<i8").tobytes() + packed.tobytes()
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(body)
        return len(ids), len(body), zlib.crc32(body)

    def write_segment(self, ids, packed, tag="seg"):
        """Write one segment file (atomically) → its catalogue row."""
        name = self._name(tag, ids)
        return (name, *self._write_file(self.dir.segment(name), ids, packed))

    def write(self, ids, packed, db, delta=False):
        """Inside the add's transaction: the new codes as a segment file → a token for commit. With
        `delta`, they join the current delta segment (rewritten whole, at most DELTA_MAX items), so a
        stream of one-image adds does not make one file each."""
        replaces = None
        if delta and len(ids) < DELTA_MAX:
            row = Catalogue.last_segment(db, "dlt-")
            if row is not None and row[1] + len(ids) <= DELTA_MAX:
                old_ids, old_packed = self._load(*row)
                replaces = row[0]
                name = f"dlt-{int(old_ids[0]):012d}-{os.urandom(4).hex()}.bin"
                ids, packed = np.concatenate([old_ids, ids]), np.concatenate([old_packed, packed])
                return (name, *self._write_file(self.dir.segment(name), ids, packed)), replaces
            return self.write_segment(ids, packed, "dlt"), None
        return self.write_segment(ids, packed), None

    def commit(self, db, token):
        row, replaces = token
        if replaces:
            Catalogue.unlist_segments(db, [replaces])
        Catalogue.list_segments(db, [row])

    def after_commit(self, token):
        if token[1]:  # the delta segment the new one replaced; a reader that listed it retries
            self._remove(token[1])

    def abandon(self, token):
        self._remove(token[0][0])

    def _remove(self, name):
        try:
            os.remove(self.dir.segment(name))
        except OSError:
            pass
        with self._lock:
            self._cache.pop(name, None)

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
            raise MissingSegment(f"{path}: segment file listed in the catalogue is missing; the index is damaged: "
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
        segments = Catalogue.segments(db)
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

    def _read_alive(self, tries=8, only=None):
        """(segments, removed, generation, ids, packed) of the last committed state (of the segments
        named in `only`, and their tombstones). A segment that vanishes between reading the catalogue and
        the file (another process's compaction or delta replaced it) means a newer state: read again."""
        for attempt in range(tries):
            with self.catalogue.reading() as db:
                listing, removed = self._state(db)
                generation = int(Catalogue.read(db, "generation", 0))
            segments = listing if only is None else [row for row in listing if row[0] in set(only)]
            try:
                if only is not None:
                    mine = [self._load(*row)[0] for row in segments]
                    removed = removed[np.isin(removed, np.concatenate(mine))] if mine else removed[:0]
                ids, packed = self._alive(segments, removed)
            except MissingSegment:
                if attempt == tries - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
                continue
            listed = {row[0] for row in listing}
            with self._lock:  # forget the files this state no longer lists (replaced by other writers)
                for name in [k for k in self._cache if k not in listed]:
                    del self._cache[name]
            return segments, removed, generation, ids, packed

    def snapshot(self, engine="auto"):
        _, _, generation, ids, packed = self._read_alive()
        snap = Snapshot(ids, packed, self.bit, engine)
        snap.generation = generation
        return snap

    def merge_small(self, fanout):
        """Size-tiered merging after an add: segments under SMALL_SEGMENT items are grouped by
        floor(log_fanout(count)); a tier that holds `fanout` of them is merged into one (of the next tier).
        So small segments stay fewer than about fanout x log_fanout(SMALL_SEGMENT) and each code is
        rewritten about log_fanout times, not once per add. → the files merged, or None."""
        with self.catalogue.reading() as db:
            rows = Catalogue.segments(db, below=SMALL_SEGMENT)
        tiers = {}
        for name, count, _, _ in rows:
            tiers.setdefault(int(math.log(max(count, 1), fanout)), []).append(name)
        for tier in sorted(tiers):
            if len(tiers[tier]) >= fanout:
                self.compact(only=tiers[tier])
                return tiers[tier]
        return None

    # ------------------------------------------------------------------ maintenance
    def _replace_all(self, db, new_rows, tag):
        """Inside a transaction: the segments become `new_rows`; tombstoned items are dropped."""
        Catalogue.purge_removed(db)
        Catalogue.unlist_segments(db)
        Catalogue.list_segments(db, new_rows)

    def _delete_unlisted(self):
        """Delete segment files the catalogue does not list. Under the write lock, so no writer is between
        writing its file and committing it; temporary files (a compaction in progress writes one outside
        the lock) only when they are old."""
        with self.catalogue.transaction() as db:
            listed = Catalogue.segment_names(db)
            now = time.time()
            for name in os.listdir(self.dir.segments):
                if name in listed:
                    continue
                path = self.dir.segment(name)
                try:
                    if name.endswith(".bin") or now - os.path.getmtime(path) > STALE_SECONDS:
                        os.remove(path)
                except OSError:
                    pass
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if k in listed}

    def compact(self, tries=2, only=None):
        """Merge every segment (or those named in `only`) into one and drop their tombstoned items. The
        merged file is made from a read of the committed state, outside the write lock (readers and
        writers go on meanwhile); the commit then swaps the segments it merged for it and drops only the
        tombstones it left out, so adds and removes committed meanwhile stay. If another merge replaced
        some of those segments first, start again; after `tries`, merge under the write lock (writers
        wait, readers still do not). A partial merge (`only`) just gives up."""
        for _ in range(tries):
            segments, removed, _, ids, packed = self._read_alive(only=only)
            if only is not None and len(segments) < 2:
                return None
            order = np.argsort(ids, kind="stable")
            ids, packed = ids[order], packed[order]
            name = self._name("cmp", ids) if len(ids) else None
            pending = self.dir.segment(name + ".pending") if name else None
            stats = self._write_file(pending, ids, packed) if name else None
            crash_point("compact:stored")
            try:
                with self.catalogue.transaction() as db:
                    listed = Catalogue.segment_names(db)
                    merged = [row[0] for row in segments]
                    if not set(merged) <= listed:
                        raise _Retry
                    Catalogue.unlist_segments(db, merged)
                    Catalogue.purge_removed(db, removed)
                    if name:
                        os.replace(pending, self.dir.segment(name))
                        Catalogue.list_segments(db, [(name, *stats)])
            except _Retry:
                if pending:
                    self._remove(os.path.basename(pending))
                if only is not None:
                    return None
                continue
            except BaseException:
                if pending:
                    self._remove(os.path.basename(pending))
                    self._remove(name)
                raise
            crash_point("compact:committed")
            self._delete_unlisted()
            return len(ids), len(removed)
        if only is not None:
            return None
        with self.catalogue.transaction() as db:
            segments, removed = self._state(db)
            ids, packed = self._alive(segments, removed)
            order = np.argsort(ids, kind="stable")
            ids, packed = ids[order], packed[order]
            rows = [self.write_segment(ids, packed, "cmp")] if len(ids) else []
            crash_point("compact:stored")
            self._replace_all(db, rows, "cmp")
        crash_point("compact:committed")
        self._delete_unlisted()
        return len(ids), len(removed)

    def rebuild(self, fingerprint, encode_items, log=print, chunk=1024):
        with self.catalogue.transaction() as db:
            rows = Catalogue.alive_items(db)
            new = []
            for start in range(0, len(rows), chunk):
                part = rows[start:start + chunk]
                ids = np.asarray([r[0] for r in part], np.int64)
                packed = np.ascontiguousarray(encode_items(ids, [r[1] for r in part]), np.uint8)
                new.append(self.write_segment(ids, packed, "rbd"))
            crash_point("rebuild:stored")
            self._replace_all(db, new, "rbd")
            Catalogue.put(db, "fingerprint", fingerprint)
        crash_point("rebuild:committed")
        self._delete_unlisted()
        return len(rows)

    def info(self, n_rows):
        with self.catalogue.reading() as db:
            n_seg, n_codes = Catalogue.segment_totals(db)
        return {"segments": int(n_seg), "memory_bytes": int(n_codes) * (8 + self.nbytes),
                "engine": "utils.retrieval (exact)"}


class _Retry(Exception):
    pass


register_backend(Backend("embedded", "segment files + SQLite catalogue, searched by utils.retrieval",
                         EmbeddedStore))
