"""A living index of hash codes: build it once, add and remove items, search it; no Paddle here.

    idx = Index.create("output/index", bit=64, fingerprint=fp, backend="embedded")  # or backend="milvus", uri=...
    ids = idx.add(packed_codes, paths, labels, hashes)      # stable integer ids, never reused
    idx.remove([3, 7]); idx.remove(paths=["images/0353.jpg"]); idx.compact()
    dist, ids = idx.snapshot().search(packed_queries, k)   # ties by id, exactly utils.retrieval's rule
    idx.relocate("/new/image/root")                        # the images moved (or Index(path, data_path=...))

An index directory (the contract is `IndexDir`):

    index.json          format, backend (+ URI and collection for Milvus), code length; written once
    catalogue.sqlite    items (id, path, labels, content hash, tombstone), segments, metadata (the model
                        fingerprint, the next id, the image root, the build source, the generation) —
                        every change one transaction
    segments/           embedded backend: append-only segment files (header, ids int64, packed codes)

Crash safety: a new segment file is written under a temporary name, fsynced and renamed, and only then
listed in the catalogue in the same transaction as its items; a file the catalogue does not list is
ignored (and deleted by `compact`). So a crash at any point leaves the previous or the new state.
`CRASH_POINTS` names the steps between writes; tests crash the process at each (utils.index.store.crash_hook,
set in a subprocess by tests/crash_launcher.py).

Paths are stored relative to the index's image root (utils.index.paths): any spelling of the same file
finds its item, and the index moves with its images. Indexes written before (absolute or build-directory
relative paths, no recorded root) are migrated in one transaction when first opened.

Several writers at once (the CLI and the service, say): every write is one transaction under the
catalogue's lock, and bumps the catalogue's generation; a reader compares `generation()` with its
snapshot's and takes a new snapshot when they differ. Readers never wait for a writer, and a compaction
merges outside the lock and commits in a moment. `add(..., delta=True)` (the service's uploads) grows
one delta segment instead of writing a file per call, and small segments are merged as they pile up
(`merge_fanout` of one size tier become one segment of the next: a bound of about fanout x log(size)
files without rewriting the large ones again and again).

Backends are a registry (`BACKENDS`): "embedded" (segment files, searched by utils.retrieval, faiss
optional) and "milvus" (a Milvus collection with a BINARY_VECTOR field and the HAMMING metric; the
catalogue stays in SQLite). Both return the same ranking: distance, then id. Each implements the `Store`
contract of utils/index/store.py and registers itself; `Index` creates and opens every backend the same
way (adding one: see store.py). `Index` is the only door: the catalogue and the store are its own
(`.catalogue` is used only inside utils/index; tests/test_index.py checks).

Modules: store.py (the backend contract, IndexDir, errors, crash points), catalogue.py (the SQLite
catalogue), layout.py (index.json, creation, migration of old indexes), paths.py (stored spellings of
paths, lookup), writes.py (the write transactions), embedded.py and milvus.py (the backends).
"""
from utils.index.catalogue import Catalogue, IndexBusy
from utils.index.index import MERGE_FANOUT, Index
from utils.index.layout import FORMAT, PATH_FORMAT
from utils.index.milvus import resolve_uri
from utils.index.store import (BACKENDS, CRASH_POINTS, Backend, EmptyIndex, IndexDir, StaleSnapshot, Store, crash_point,
                               get_backend, is_index, register_backend)

__all__ = ["Index", "Catalogue", "IndexBusy", "IndexDir", "BACKENDS", "Backend", "Store", "register_backend",
           "get_backend", "EmptyIndex", "StaleSnapshot", "CRASH_POINTS", "crash_point", "is_index", "resolve_uri",
           "FORMAT", "PATH_FORMAT", "MERGE_FANOUT"]
