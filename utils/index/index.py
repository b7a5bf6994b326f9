"""`Index`: an open index, the only door to the catalogue and the backend's store (see the package
docstring, utils/index/__init__.py, for the layout and the guarantees)."""
import os

import numpy as np

from utils.errors import UserError
import utils.index.paths as _paths
import utils.index.writes as _writes
from utils.index.catalogue import Catalogue
from utils.index.layout import create_dir, dir_bytes, migrate_paths, read_meta
from utils.index.store import BACKENDS, IndexDir
import utils.index.embedded  # noqa: F401 - the backends register themselves
import utils.index.milvus  # noqa: F401

MERGE_FANOUT = 8  # this many small segments of one size tier are merged into one (see Index.add)


# --------------------------------------------------------------------------------------------- index
class Index:
    """An open index: the catalogue plus the backend's code store."""

    def __init__(self, path, flag="--index", data_path=None):
        """`data_path`: the image root for this session (the images moved; `relocate` records it)."""
        d = IndexDir(path)
        meta, bit, backend = read_meta(d, flag)
        self.dir, self.meta, self.bit, self.backend = d, meta, bit, backend
        self.nbytes = (bit + 7) // 8
        self.merge_fanout = MERGE_FANOUT
        self.index_dir = os.path.abspath(d.path)
        self.catalogue = Catalogue(d.catalogue)  # internal to utils/index: use the methods below
        try:
            migrate_paths(self.catalogue, self.index_dir)
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
        stored relative to (none: every path absolute). `uri` and the backend's options in `extra` go to
        the backend (its Backend entry); the rest of `extra` is catalogue metadata."""
        import shutil

        path = create_dir(path, bit, fingerprint, backend, uri, extra, root)
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
    def key(self, path):
        """The stored spelling of the image file at `path` (relative to the current directory or absolute)."""
        return _paths.to_key(path, self.root, self.index_dir)

    def keys(self, paths):
        return _paths.to_keys(paths, self.root, self.index_dir)

    def file(self, key):
        """The image file of a stored path."""
        return _paths.to_file(key, self.root, self.index_dir)

    def alive_paths(self):
        """{stored path: (id, sha256 of the file's content)} of the items in the index now."""
        return self.catalogue.alive_paths()

    def find(self, key):
        """The id of the alive item stored as `key` (a stored spelling, see `key`), or None."""
        known = self.catalogue.alive_paths().get(key)
        return known[0] if known else None

    def lookup(self, paths):
        """{given path: id} of the alive items the paths name (any spelling of the same file: as the list
        writes it, relative to the current directory, absolute, through a symlink), and the paths that
        name none."""
        return _paths.lookup(self.catalogue.alive_paths(), paths, self.root, self.index_dir)

    def relocate(self, root, sample=200):
        """Record a new image root (the images moved). Refused when none of a sample of the items stored
        relative to the root is found under it. → (sampled, found)."""
        if not os.path.isdir(root):
            raise UserError(f"--root {root}: directory not found; give the folder the index's images are in now")
        root = os.path.abspath(root)
        keys = self.catalogue.alive_keys(sample * 10)
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
        return self.catalogue.any_alive_relative()

    @property
    def recorded_root(self):
        """The image root the index records (`root` is this session's: `data_path` when given)."""
        return self.catalogue.get("root")

    def generation(self):
        """Grows with every write committed to the index, by any process."""
        return self.catalogue.generation()

    # ------------------------------------------------------------------ metadata
    @property
    def fingerprint(self):
        return self.catalogue.get("fingerprint")

    @property
    def source(self):
        """What the index was built from (scan_sources' description: the list and image root, or the folder)."""
        return self.catalogue.get("source")

    def model_record(self):
        """Where the index's model is ({"model_dir", "runtime"} or {"pretrained"}), or {}."""
        return self.catalogue.get("model") or {}

    def set_model_record(self, record):
        with self.catalogue.transaction() as db:
            Catalogue.put(db, "model", record)

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
        return _writes.add(self.catalogue, self.store, packed, keys, labels, hashes, replaces, delta,
                           self.merge_fanout, self.dir.path)

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
        return _writes.remove(self.catalogue, self.store, sorted(set(targets))), missing

    def compact(self):
        """Merge the segments and drop tombstoned items. → (items kept, items dropped)."""
        _writes.recovered(self.catalogue, self.store)
        return self.store.compact()

    def replace_codes(self, fingerprint, encode_items, log=print):
        """Re-encode every item with a new model (`--rebuild`): `encode_items(ids, paths) -> packed` per
        chunk; the new codes and the new fingerprint are committed together."""
        _writes.recovered(self.catalogue, self.store)
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
