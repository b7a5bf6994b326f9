"""An index directory on disk: its description (index.json, written once), its creation (in a temporary
sibling, renamed into place), and the migration of indexes written before paths were stored relative to
a root. Generic over the storage backends: each one's `Backend` entry (utils.index.store) says what it
adds to index.json; nothing here names a backend.
"""
import json
import os
import shutil
import tempfile

from utils.errors import UserError
from utils.fileio import write_json
from utils.index.paths import to_key
from utils.index.catalogue import Catalogue
from utils.index.store import BACKENDS, IndexDir, get_backend

FORMAT = "hashing-index/1"
PATH_FORMAT = 2  # catalogue meta `path_format`: paths relative to the recorded `root` (utils.index.paths)


def read_meta(d, flag="--index"):
    """(index.json fields, bit, backend name) of the index directory `d` (IndexDir), checked; UserError
    naming the file and what to do when it is missing or damaged."""
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
    return meta, bit, backend


def create_dir(path, bit, fingerprint, backend="embedded", uri=None, extra=None, root=None):
    """Make a new empty index directory at `path` (which must not exist): made in a temporary sibling
    directory and renamed into place, so a crash leaves no half-made index. `extra`: catalogue metadata
    (and the backend's options, see Backend.options). → the absolute path."""
    spec = get_backend(backend)
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path):
        raise UserError(f"--out {path} already exists; choose a new directory or add to it with "
                        f"scripts/index.py add --index {path}")
    extra = extra or {}
    options = {k: v for k, v in extra.items() if k in spec.options}
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=parent)
    try:
        d = IndexDir(tmp)
        os.makedirs(d.segments)
        meta = {"format": FORMAT, "backend": backend, "bit": int(bit)}
        meta.update(spec.describe(path, uri, options))
        cat = Catalogue(d.catalogue, create=True)
        with cat.transaction() as db:
            Catalogue.put(db, "fingerprint", fingerprint)
            Catalogue.put(db, "next_id", 0)
            Catalogue.put(db, "root", os.path.abspath(root) if root else None)
            Catalogue.put(db, "path_format", PATH_FORMAT)
            for key, value in extra.items():
                if key not in spec.options:
                    Catalogue.put(db, key, value)
        cat.close()
        write_json(d.meta, meta)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def migrate_paths(catalogue, index_dir):
    """An index written before paths were stored relative to a root (absolute paths, or relative to the
    directory the build ran in): record the root of its build source and respell every path, in one
    transaction. Nothing to do for an index of PATH_FORMAT 2."""
    if catalogue.get("path_format") == PATH_FORMAT:
        return
    with catalogue.transaction() as db:
        if Catalogue.read(db, "path_format") == PATH_FORMAT:
            return
        source = Catalogue.read(db, "source") or {}
        root = source.get("data_path") or source.get("images") if isinstance(source, dict) else None
        root = os.path.abspath(root) if root else None
        seen, updates, duplicates = set(), [], []
        for i, old, removed in Catalogue.all_items(db):
            new = _old_key(old, root, index_dir)
            if not removed:
                if new in seen:  # two spellings of one file: the later one was a duplicate all along
                    duplicates.append(i)
                seen.add(new)
            if new != old:
                updates.append((new, i))
        Catalogue.respell(db, updates, duplicates)
        Catalogue.put(db, "root", root)
        Catalogue.put(db, "path_format", PATH_FORMAT)


def _old_key(old, root, index_dir):
    """The stored spelling of a path written before PATH_FORMAT 2: absolute, or relative to the directory
    the build ran in (unknown: the longest leading part of it that ends the root's path is taken as the
    root, e.g. datasets/coco/images/1.jpg under /x/datasets/coco)."""
    if os.path.isabs(old) or not root:
        return to_key(old, root, index_dir)
    parts = os.path.normpath(old).split(os.sep)
    tail = os.path.normpath(root).split(os.sep)
    for i in range(len(parts) - 1, 0, -1):
        if tail[-i:] == parts[:i]:
            return "/".join(parts[i:])
    return to_key(old, root, index_dir)


def dir_bytes(path):
    total = 0
    for base, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(base, f))
            except OSError:
                pass
    return total
