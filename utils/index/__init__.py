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
`CRASH_POINTS` names the steps between writes; tests crash the process at each (HASHING_INDEX_CRASH_AT).

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
catalogue stays in SQLite). Both return the same ranking: distance, then id.
"""
import json
import os
import shutil
import sqlite3
import tempfile

import numpy as np

from utils.errors import UserError
from utils.fileio import write_json
from utils.index import paths as _paths
from utils.index.catalogue import Catalogue, IndexBusy  # noqa: F401 - re-exported
from utils.index.store import (BACKENDS, CRASH_ENV, CRASH_POINTS, Backend, EmptyIndex, IndexDir,  # noqa: F401
                               StaleSnapshot, crash_point, is_index)
from utils.index import embedded as _embedded  # noqa: F401 - the backends register themselves
from utils.index import milvus as _milvus  # noqa: F401

FORMAT = "hashing-index/1"
PATH_FORMAT = 2  # catalogue meta `path_format`: paths relative to the recorded `root` (utils.index.paths)
MERGE_FANOUT = 8  # this many small segments of one size tier are merged into one (see Index.add)


# --------------------------------------------------------------------------------------------- index
class Index:
    """An open index: the catalogue plus the backend's code store."""

    def __init__(self, path, flag="--index", data_path=None):
        """`data_path`: the image root for this session (the images moved; `relocate` records it)."""
        d = IndexDir(path)
        if not os.path.isdir(d.path):
            raise UserError(f"{flag} {d.path}: no such directory; build an index first: "
                            f"python scripts/index.py build --model M --images DIR --out {d.path}")
        try:
            with open(d.meta, encoding="utf-8") as f:
                meta = json.load(f)
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
            bit = int(meta["bit"])
            backend = meta["backend"]
        except FileNotFoundError:
            raise UserError(f"{flag} {d.path}: not an index directory (no {IndexDir.META}); "
                            "build one with scripts/index.py build")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{d.meta}: not a valid index description ({type(exc).__name__}: {exc}); "
                            "restore it from a backup or build the index again")
        if backend not in BACKENDS:
            raise UserError(f"{d.meta}: unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
        if not os.path.isfile(d.catalogue):
            raise UserError(f"{flag} {d.path}: {IndexDir.CATALOGUE} is missing; the index is damaged: restore "
                            "it from a backup or build it again")
        self.dir, self.meta, self.bit, self.backend = d, meta, bit, backend
        self.nbytes = (bit + 7) // 8
        self.merge_fanout = MERGE_FANOUT
        self.index_dir = os.path.abspath(d.path)
        self.catalogue = Catalogue(d.catalogue)
        try:
            self._migrate_paths()
            recorded = self.catalogue.get("root")
            self._root_given = bool(data_path)
            self.root = os.path.abspath(data_path) if data_path else recorded
            if data_path and not os.path.isdir(data_path):
                raise UserError(f"--data-path {data_path}: directory not found; give the folder the index's "
                                f"images are in now (it recorded {recorded})")
            self.store = BACKENDS[backend].open(d, meta, self.catalogue, bit)
        except BaseException:
            self.catalogue.close()
            raise

    @classmethod
    def create(cls, path, bit, fingerprint, backend="embedded", uri=None, extra=None, root=None):
        """A new empty index at `path` (which must not exist): made in a temporary sibling directory and
        renamed into place, so a crash leaves no half-made index. `root`: the image root paths are
        stored relative to (none: every path absolute)."""
        if backend not in BACKENDS:
            raise UserError(f"--backend {backend}: choose one of {', '.join(BACKENDS)}")
        path = os.path.abspath(os.fspath(path))
        if os.path.exists(path):
            raise UserError(f"--out {path} already exists; choose a new directory or add to it with "
                            f"scripts/index.py add --index {path}")
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=parent)
        try:
            d = IndexDir(tmp)
            os.makedirs(d.segments)
            meta = {"format": FORMAT, "backend": backend, "bit": int(bit)}
            if backend == "milvus":
                meta.update(uri=resolve_uri(uri, path), collection=(extra or {}).get("collection")
                            or "hashing_" + os.urandom(6).hex())
            cat = Catalogue(d.catalogue, create=True)
            with cat.transaction() as db:
                Catalogue.put(db, "fingerprint", fingerprint)
                Catalogue.put(db, "next_id", 0)
                Catalogue.put(db, "root", os.path.abspath(root) if root else None)
                Catalogue.put(db, "path_format", PATH_FORMAT)
                for key, value in (extra or {}).items():
                    if key != "collection":
                        Catalogue.put(db, key, value)
            cat.close()
            write_json(d.meta, meta)
            os.rename(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            return cls(path)  # the backend makes its storage on first open (a Milvus collection)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.store.close()
        finally:
            self.catalogue.close()

    # ------------------------------------------------------------------ paths
    def _migrate_paths(self):
        """An index written before paths were stored relative to a root (absolute paths, or relative to the
        directory the build ran in): record the root of its build source and respell every path."""
        if self.catalogue.get("path_format") == PATH_FORMAT:
            return
        with self.catalogue.transaction() as db:
            if Catalogue.read(db, "path_format") == PATH_FORMAT:
                return
            source = Catalogue.read(db, "source") or {}
            root = source.get("data_path") or source.get("images") if isinstance(source, dict) else None
            root = os.path.abspath(root) if root else None
            rows = db.execute("SELECT id, path, removed FROM items ORDER BY id").fetchall()
            seen, updates, duplicates = set(), [], []
            for i, old, removed in rows:
                new = _old_key(old, root, self.index_dir)
                if not removed:
                    if new in seen:  # two spellings of one file: the later one was a duplicate all along
                        duplicates.append((i,))
                    seen.add(new)
                if new != old:
                    updates.append((new, i))
            db.executemany("UPDATE items SET removed = 1 WHERE id = ?", duplicates)
            db.execute("DROP INDEX IF EXISTS items_alive_path")
            db.executemany("UPDATE items SET path = ? WHERE id = ?", updates)
            db.execute("CREATE UNIQUE INDEX items_alive_path ON items(path) WHERE removed = 0")
            Catalogue.put(db, "root", root)
            Catalogue.put(db, "path_format", PATH_FORMAT)

    def key(self, path):
        """The stored spelling of the image file at `path` (relative to the current directory or absolute)."""
        return _paths.to_key(path, self.root, self.index_dir)

    def keys(self, paths):
        return _paths.to_keys(paths, self.root, self.index_dir)

    def file(self, key):
        """The image file of a stored path."""
        return _paths.to_file(key, self.root, self.index_dir)

    def lookup(self, paths):
        """{given path: id} of the alive items the paths name (any spelling of the same file: as the list
        writes it, relative to the current directory, absolute, through a symlink), and the paths that
        name none."""
        alive = self.catalogue.alive_paths()
        found, missing, by_inode = {}, [], None
        for p in paths:
            hit = next((alive[c][0] for c in _paths.candidates(p, self.root, self.index_dir) if c in alive), None)
            if hit is None and os.path.exists(p):  # another link to the same file
                if by_inode is None:
                    by_inode = {}
                    for key, (i, _) in alive.items():
                        try:
                            st = os.stat(self.file(key))
                        except OSError:
                            continue
                        by_inode.setdefault((st.st_dev, st.st_ino), i)
                st = os.stat(p)
                hit = by_inode.get((st.st_dev, st.st_ino))
            if hit is None:
                missing.append(p)
            else:
                found[p] = hit
        return found, missing

    def relocate(self, root, sample=200):
        """Record a new image root (the images moved). Refused when none of a sample of the items stored
        relative to the root is found under it. → (sampled, found)."""
        if not os.path.isdir(root):
            raise UserError(f"--root {root}: directory not found; give the folder the index's images are in now")
        root = os.path.abspath(root)
        with self.catalogue.reading() as db:
            keys = [r[0] for r in db.execute("SELECT path FROM items WHERE removed = 0 ORDER BY id LIMIT ?",
                                             (sample * 10,))]
        keys = [k for k in keys if not os.path.isabs(k) and not k.startswith(_paths.INDEX_PREFIX)][:sample]
        found = sum(os.path.isfile(_paths.to_file(k, root)) for k in keys)
        if keys and not found:
            raise UserError(f"--root {root}: none of {len(keys)} images of the index is there (first: {keys[0]}); "
                            "give the folder that holds them")
        with self.catalogue.transaction() as db:
            Catalogue.put(db, "root", root)
        self.root = root
        return len(keys), found

    def root_missing(self):
        """True when the image root is not a directory and items are stored relative to it."""
        if not self.root or os.path.isdir(self.root):
            return False
        with self.catalogue.reading() as db:
            return db.execute("SELECT 1 FROM items WHERE removed = 0 AND path NOT LIKE '/%' AND "
                              "path NOT LIKE '@index/%' LIMIT 1").fetchone() is not None

    def generation(self):
        """Grows with every write committed to the index, by any process."""
        return self.catalogue.generation()

    # ------------------------------------------------------------------ metadata
    @property
    def fingerprint(self):
        return self.catalogue.get("fingerprint")

    def check_fingerprint(self, fingerprint, what="the model"):
        """UserError naming what differs when `fingerprint` is not the one the codes were made with."""
        mine = self.fingerprint or {}
        if mine == fingerprint:
            return
        changed = [k for k in sorted(set(mine) | set(fingerprint)) if mine.get(k) != fingerprint.get(k)]
        raise UserError(f"--index {self.dir.path}: {what} differs from the one that encoded the index "
                        f"(different {', '.join(changed)}); use the index's own model, or re-encode the "
                        "index with: scripts/index.py add --index ... --model M --rebuild")

    def __len__(self):
        return self.catalogue.count()[0]

    # ------------------------------------------------------------------ writes
    def _check_codes(self, packed, n):
        packed = np.ascontiguousarray(packed, np.uint8)
        if packed.shape != (n, self.nbytes):
            raise ValueError(f"expected packed codes of shape ({n}, {self.nbytes}), got {packed.shape}")
        return packed

    def add(self, packed, paths, labels=None, hashes=None, replaces=(), delta=False):
        """Append items (packed uint8 codes (n, bytes)) for the image files `paths` (stored relative to
        the root, see `key`); `replaces`: ids tombstoned in the same commit (an image whose content
        changed); `delta`: join the delta segment (small, frequent adds). → the new ids (consecutive,
        never reused)."""
        n = len(paths)
        packed = self._check_codes(packed, n)
        keys = self.keys(paths)
        labels = list(labels) if labels is not None else [None] * n
        hashes = list(hashes) if hashes is not None else [""] * n
        if n == 0:
            return np.zeros(0, np.int64)
        token = None
        try:
            with self.catalogue.transaction() as db:  # holds the write lock: ids cannot collide
                self.store.recover(db)
                first = int(Catalogue.read(db, "next_id", 0))
                ids = np.arange(first, first + n, dtype=np.int64)
                token = self.store.write(ids, packed, db, delta)
                crash_point("add:stored")
                if replaces:
                    db.executemany("UPDATE items SET removed = 1 WHERE id = ?", [(int(i),) for i in replaces])
                db.executemany("INSERT INTO items(id, path, labels, sha256) VALUES (?, ?, ?, ?)",
                               [(int(i), p, None if lab is None else json.dumps([int(x) for x in lab]), h)
                                for i, p, lab, h in zip(ids, keys, labels, hashes)])
                Catalogue.put(db, "next_id", first + n)
                self.store.commit(db, token)
        except BaseException as exc:
            if token is not None:
                self.store.abandon(token)
            if isinstance(exc, sqlite3.IntegrityError):
                raise UserError(f"--index {self.dir.path}: a path is already in the index ({exc}); "
                                "remove it first or use scripts/index.py add, which skips known images")
            raise
        self.store.after_commit(token)
        crash_point("add:committed")
        if replaces:
            self.store.delete([int(i) for i in replaces])
        self.store.merge_small(self.merge_fanout)
        return ids

    def remove(self, ids=(), paths=(), missing_ok=False):
        """Tombstone items by id or by path (any spelling of the file, see `lookup`). Unknown ids / paths
        are an error naming them (nothing is removed), or skipped and returned when `missing_ok`.
        → (removed ids, missing)."""
        ids = [int(i) for i in ids]
        found = self.catalogue.items(ids)
        missing = [str(i) for i in ids if i not in found or found[i][2]]
        targets = [i for i in ids if i in found and not found[i][2]]
        if paths:
            by_path, unknown = self.lookup(paths)
            missing += unknown
            targets += list(by_path.values())
        if missing and not missing_ok:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise UserError(f"not in the index {self.dir.path}: {', '.join(missing[:5])}{more}; nothing was "
                            "removed (check with scripts/index.py info, or pass --skip-missing)")
        targets = sorted(set(targets))
        if targets:
            with self.catalogue.transaction() as db:
                self.store.recover(db)
                # another process may have removed some meanwhile: those are not ours to report
                targets = [i for i in targets
                           if db.execute("UPDATE items SET removed = 1 WHERE id = ? AND removed = 0", (i,)).rowcount]
            crash_point("remove:committed")
            self.store.delete(targets)
            crash_point("remove:applied")
        return targets, missing

    def compact(self):
        """Merge the segments and drop tombstoned items. → (items kept, items dropped)."""
        with self.catalogue.transaction() as db:
            self.store.recover(db)
        return self.store.compact()

    def replace_codes(self, fingerprint, encode_items, log=print):
        """Re-encode every item with a new model (`--rebuild`): `encode_items(ids, paths) -> packed` per
        chunk; the new codes and the new fingerprint are committed together."""
        with self.catalogue.transaction() as db:
            self.store.recover(db)
        return self.store.rebuild(fingerprint, lambda ids, keys: encode_items(ids, [self.file(k) for k in keys]), log)

    # ------------------------------------------------------------------ reads
    def snapshot(self, engine=None):
        """An immutable view for searching: later writes do not change it. Its `generation` is the
        catalogue's when it was read (compare with `generation()`)."""
        if not self._root_given:  # another process may have relocated the index
            self.root = self.catalogue.get("root")
        return self.store.snapshot(engine or self.meta.get("engine", "auto"))

    def info(self):
        alive, removed = self.catalogue.count()
        out = {"index": self.dir.path, "count": alive, "tombstones": removed, "bit": self.bit,
               "backend": self.backend, "model": self.catalogue.get("model"),
               "fingerprint": self.fingerprint, "source": self.catalogue.get("source"),
               "next_id": int(self.catalogue.get("next_id", 0)), "root": self.root,
               "generation": self.generation(),
               "disk_bytes": dir_bytes(self.dir.path)}
        out.update(self.store.info(alive + removed))
        return out

    def describe(self, ids):
        """{id: (path, labels)} of items (also tombstoned ones still in the catalogue); paths as stored."""
        return {i: (p, lab) for i, (p, lab, _) in self.catalogue.items(ids).items()}

    def alive(self, ids):
        """{id: (path, labels)} of those of `ids` that are in the index now (not removed, not compacted away)."""
        return {i: (p, lab) for i, (p, lab, removed) in self.catalogue.items(ids).items() if not removed}


def _old_key(old, root, index_dir):
    """The stored spelling of a path written before PATH_FORMAT 2: absolute, or relative to the directory
    the build ran in (unknown: the longest leading part of it that ends the root's path is taken as the
    root, e.g. datasets/coco/images/1.jpg under /x/datasets/coco)."""
    if os.path.isabs(old) or not root:
        return _paths.to_key(old, root, index_dir)
    parts = os.path.normpath(old).split(os.sep)
    tail = os.path.normpath(root).split(os.sep)
    for i in range(len(parts) - 1, 0, -1):
        if tail[-i:] == parts[:i]:
            return "/".join(parts[i:])
    return _paths.to_key(old, root, index_dir)


def dir_bytes(path):
    total = 0
    for base, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(base, f))
            except OSError:
                pass
    return total


def resolve_uri(uri, index_path):
    """A Milvus URI as stored: a server (http[s]://, tcp://) as given, a Milvus Lite file made absolute;
    none: a Lite file inside the index directory."""
    if not uri:
        return os.path.join(index_path, "milvus.db")
    if "://" in uri:
        return uri
    return os.path.abspath(uri)

