"""The Milvus backend: the codes in a Milvus collection (`id` INT64 primary key, `code` BINARY_VECTOR,
index BIN_FLAT with the HAMMING metric, i.e. exact), the catalogue in the index's SQLite file.

    --backend milvus --uri ./gallery.db               Milvus Lite: one local file, one process at a time
    --backend milvus --uri http://milvus-host:19530   a Milvus server or cluster (MILVUS_TOKEN for auth)

Order of writes: `add` inserts into Milvus inside the catalogue's write transaction and commits after it;
a write first clears what a crashed one left, inside its transaction (so never another writer's rows);
`remove` commits the tombstones first, then deletes from Milvus. A crash in between leaves Milvus rows the
catalogue does not count (ids >= next id) or tombstoned rows still in Milvus: searches filter both out and
the next write deletes them, so the index reads as the previous or the new state.

`--rebuild` writes the new codes into a new collection (`<collection>_r<N>`) and switches to it in the same
catalogue transaction that records the new model; the collection that is not current (the old one after
the switch, or a half-written new one after a crash before it) is dropped at the next write.

Milvus orders ties arbitrarily; searches ask for more than k and widen until the k-th result is certain,
then order by (distance, id) — the same ranking as the embedded backend. Needs `pymilvus<2.6` and, for a
local file, `milvus-lite==2.5.1` (Milvus Lite 3.x refuses binary vectors) with `setuptools<70`.
"""
import os
import re

import numpy as np

from utils.errors import UserError
from utils.index.store import Backend, EmptyIndex, StaleSnapshot, Store, crash_point, register_backend
from utils.index.catalogue import Catalogue

INSTALL = "pip install 'pymilvus>=2.5,<2.6' 'milvus-lite==2.5.1' 'setuptools<70' (requirements-test.txt pins them)"
MAX_LIMIT = 16384  # Milvus's largest topk
BATCH = 10000


class MilvusSnapshot:
    def __init__(self, store, next_id, removed, count):
        self.store, self.next_id, self.removed, self.count = store, next_id, removed, count
        self.memory_bytes, self.generation = None, None  # the codes are held by the Milvus server
        self.name = store.name  # the collection when the snapshot was taken

    def __len__(self):
        return self.count

    def _search(self, queries, limit):
        s = self.store
        res = s.client.search(self.name, data=[q.tobytes() for q in queries], limit=limit, anns_field="code",
                              search_params={"metric_type": "HAMMING"}, output_fields=[])
        return [[(int(round(h["distance"])), int(h["id"])) for h in row] for row in res]

    def search(self, packed_queries, k):
        if self.count == 0:
            raise EmptyIndex("the index is empty: add images first (scripts/index.py add)")
        queries = np.ascontiguousarray(packed_queries, np.uint8)
        k = min(int(k), self.count)
        out_d = np.zeros((len(queries), k), np.int32)
        out_i = np.zeros((len(queries), k), np.int64)
        todo = np.arange(len(queries))
        limit = min(MAX_LIMIT, k + len(self.removed) + max(16, k))
        while len(todo):
            rows = self._search(queries[todo], limit)
            again = []
            for q, raw in zip(todo, rows):
                kept = sorted((d, i) for d, i in raw if i < self.next_id and i not in self.removed)
                certain = len(raw) < limit or (len(kept) >= k and kept[k - 1][0] < raw[-1][0])
                if len(raw) < limit and len(kept) < k:  # Milvus gave all it holds: rows this snapshot
                    raise StaleSnapshot(f"Milvus collection {self.store.name} changed under the snapshot")
                if certain or limit >= MAX_LIMIT:
                    if len(kept) < k or not certain:
                        raise UserError(f"Milvus collection {self.store.name}: more than {MAX_LIMIT} codes tie "
                                        f"at the {k}-th distance; ask for a smaller k")
                    out_d[q], out_i[q] = [d for d, _ in kept[:k]], [i for _, i in kept[:k]]
                else:
                    again.append(q)
            todo, limit = np.asarray(again, np.int64), min(MAX_LIMIT, 4 * limit)
        return out_d, out_i


    def _range(self, query, low, high, limit):
        """[(distance, id)] of up to `limit` rows with low <= distance < high (Milvus range search on HAMMING:
        `range_filter` <= d < `radius`), this snapshot's removed and newer rows left out."""
        params = {"radius": int(high)}
        if low > 0:
            params["range_filter"] = int(low)
        res = self.store.client.search(self.name, data=[query.tobytes()], limit=limit, anns_field="code",
                                       search_params={"metric_type": "HAMMING", "params": params}, output_fields=[])
        raw = [(int(round(h["distance"])), int(h["id"])) for h in res[0]]
        return raw, sorted((d, i) for d, i in raw if i < self.next_id and i not in self.removed)

    def search_radius(self, packed_queries, radius, max_results):
        """Every row within `radius` by (distance, id), at most `max_results`: a Milvus range search; when the
        cap falls inside a tie, a second range search of that one distance finds its smallest ids. `total` is
        exact when nothing was cut, None (unknown) when the cap cut the list."""
        from utils.retrieval.radius import RadiusHits

        if self.count == 0:
            raise EmptyIndex("the index is empty: add images first (scripts/index.py add)")
        cap = MAX_LIMIT if max_results is None else int(max_results)
        out = []
        for q in np.ascontiguousarray(packed_queries, np.uint8):
            limit = min(MAX_LIMIT, cap + len(self.removed) + 1)
            raw, kept = self._range(q, 0, radius + 1, limit)
            if len(raw) < limit:  # Milvus returned every row within the radius
                found, total, capped = kept[:cap], len(kept), len(kept) > cap
            elif len(kept) < cap:  # only when the limit hit MAX_LIMIT
                raise UserError(f"Milvus collection {self.name}: more than {MAX_LIMIT} rows within distance {radius} "
                                f"({len(self.removed)} of them may be removed ones); ask for fewer --max-results")
            else:  # the `limit` nearest rows: all of those nearer than the cap's distance, some at it
                cut = kept[cap - 1][0]
                below = [h for h in kept if h[0] < cut]
                raw_t, at_cut = self._range(q, cut, cut + 1, MAX_LIMIT)
                if len(raw_t) >= MAX_LIMIT:
                    raise UserError(f"Milvus collection {self.name}: more than {MAX_LIMIT} codes tie at distance "
                                    f"{cut}; ask for a smaller radius or fewer --max-results")
                found, total, capped = (below + at_cut)[:cap], None, True
            out.append(RadiusHits(np.array([i for _, i in found], np.int64), np.array([d for d, _ in found], np.int64),
                                  total, capped, "milvus range search"))
        return out


class MilvusStore(Store):
    def __init__(self, d, meta, catalogue, bit):
        try:
            from pymilvus import DataType, MilvusClient
        except ImportError as exc:
            raise UserError(f"the Milvus backend needs pymilvus ({exc}): {INSTALL}")
        if bit % 8:
            raise UserError(f"Milvus binary vectors need a multiple of 8 bits; this index has {bit}")
        self.dir, self.catalogue, self.bit, self.base = d, catalogue, bit, meta["collection"]
        self.name = catalogue.get("collection", self.base)  # a --rebuild moves to a new collection
        self.uri, self.index_type = meta["uri"], meta.get("index_type", "BIN_FLAT")
        self._types = DataType
        try:
            self.client = MilvusClient(uri=self.uri, token=os.environ.get("MILVUS_TOKEN", ""))
            self._create(self.name)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - pymilvus raises many kinds; all mean "cannot use it"
            raise UserError(f"cannot open Milvus collection {self.name} at {self.uri} "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                            f"check --uri / the server (and MILVUS_TOKEN); Milvus Lite needs: {INSTALL}")
        self._recovered = False

    def _create(self, name):
        if not self.client.has_collection(name):
            schema = self.client.create_schema(auto_id=False)
            schema.add_field("id", self._types.INT64, is_primary=True)
            schema.add_field("code", self._types.BINARY_VECTOR, dim=self.bit)
            params = self.client.prepare_index_params()
            params.add_index("code", index_type=self.index_type, metric_type="HAMMING")
            self.client.create_collection(name, schema=schema, index_params=params)
        self.client.load_collection(name)

    def _stale_collections(self):
        """This index's collections other than the current one (left by a --rebuild)."""
        return [c for c in self.client.list_collections()
                if c != self.name and re.fullmatch(re.escape(self.base) + r"(_r\d+)?", c)]

    def close(self):
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - closing a client that is gone
            pass

    def recover(self, db):
        """Inside a write transaction (no other writer is between its insert and its commit): delete what
        a crashed write left in Milvus: rows beyond the committed ids, tombstoned rows, and the collection
        a --rebuild moved away from (or did not finish)."""
        self._follow(db)
        if self._recovered:
            return
        for name in self._stale_collections():
            self.client.drop_collection(name)
        next_id = int(Catalogue.read(db, "next_id", 0))
        self.client.delete(self.name, filter=f"id >= {next_id}")
        removed = self.catalogue.removed_ids(db)
        for start in range(0, len(removed), BATCH):
            self.client.delete(self.name, ids=removed[start:start + BATCH])
        self._recovered = True

    def _follow(self, db):
        """Use the collection the catalogue names (another process's --rebuild may have switched it)."""
        name = Catalogue.read(db, "collection", self.base)
        if name != self.name:
            self.client.load_collection(name)
            self.name = name

    def _insert(self, ids, packed, collection=None):
        for start in range(0, len(ids), BATCH):
            self.client.insert(collection or self.name, [{"id": int(i), "code": c.tobytes()}
                                           for i, c in zip(ids[start:start + BATCH], packed[start:start + BATCH])])
        return int(ids[0]), int(ids[-1]) + 1

    def write(self, ids, packed, db=None, delta=False):
        return self._insert(ids, packed)

    def commit(self, db, token):
        pass

    def after_commit(self, token):
        pass

    def abandon(self, token):
        try:
            self.client.delete(self.name, filter=f"id >= {token[0]} and id < {token[1]}")
        except Exception:  # noqa: BLE001 - the next recover() deletes them
            pass

    def delete(self, ids):
        for start in range(0, len(ids), BATCH):
            self.client.delete(self.name, ids=[int(i) for i in ids[start:start + BATCH]])

    def merge_small(self, fanout):
        pass  # Milvus manages its own segments

    def snapshot(self, engine="auto"):
        with self.catalogue.reading() as db:
            self._follow(db)
            next_id = int(Catalogue.read(db, "next_id", 0))
            removed = set(self.catalogue.removed_ids(db))
            alive = Catalogue.count_alive(db)
            generation = int(Catalogue.read(db, "generation", 0))
        snap = MilvusSnapshot(self, next_id, removed, int(alive))
        snap.generation = generation
        return snap

    def compact(self):
        with self.catalogue.transaction() as db:
            removed = self.catalogue.removed_ids(db)
            self.delete(removed)
            try:
                self.client.compact(self.name)
            except Exception:  # noqa: BLE001 - Milvus Lite has no compaction; the rows are deleted anyway
                pass
            Catalogue.purge_removed(db)
        return self.catalogue.count()[0], len(removed)

    def rebuild(self, fingerprint, encode_items, log=print, chunk=1024):
        n = int(self.catalogue.get("rebuilds", 0)) + 1
        new = f"{self.base}_r{n}"
        if self.client.has_collection(new):  # a rebuild that crashed before its switch
            self.client.drop_collection(new)
        self._create(new)
        with self.catalogue.transaction() as db:  # the write lock: no add or remove meanwhile
            rows = Catalogue.alive_items(db)
            for start in range(0, len(rows), chunk):
                part = rows[start:start + chunk]
                ids = np.asarray([r[0] for r in part], np.int64)
                self._insert(ids, np.ascontiguousarray(encode_items(ids, [r[1] for r in part]), np.uint8), new)
            crash_point("rebuild:stored")
            for key, value in (("collection", new), ("rebuilds", n), ("fingerprint", fingerprint)):
                Catalogue.put(db, key, value)
        old, self.name = self.name, new
        crash_point("rebuild:committed")
        self.client.drop_collection(old)
        return len(rows)

    def info(self, n_rows):
        try:
            rows = int(self.client.get_collection_stats(self.name).get("row_count", -1))
        except Exception:  # noqa: BLE001
            rows = None
        return {"uri": self.uri, "collection": self.name, "milvus_rows": rows, "memory_bytes": None,
                "engine": "Milvus BIN_FLAT, HAMMING"}


def resolve_uri(uri, index_path):
    """A Milvus URI as stored: a server (http[s]://, tcp://) as given, a Milvus Lite file made absolute;
    none: a Lite file inside the index directory."""
    if not uri:
        return os.path.join(index_path, "milvus.db")
    if "://" in uri:
        return uri
    return os.path.abspath(uri)


def describe(index_path, uri, options):
    """The index.json fields of a new Milvus index: where the server (or Lite file) is, and the collection
    (`extra={"collection": ...}` of Index.create, else a new random name)."""
    return {"uri": resolve_uri(uri, index_path),
            "collection": options.get("collection") or "hashing_" + os.urandom(6).hex()}


register_backend(Backend("milvus", "a Milvus collection (BINARY_VECTOR, HAMMING), or a Milvus Lite file", MilvusStore,
                         describe=describe, options=("collection",)))
