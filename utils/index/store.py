"""The contract between the index (utils/index/__init__.py: `Index`, the only door) and its storage
backends (embedded.py, milvus.py): the names of an index directory, the `Store` every backend implements,
the backend registry, the errors a store raises, and the crash points of its writes. A backend module
imports this module and the catalogue, never the package facade that imports it (tests/test_layers.py
checks for cycles).

Adding a storage backend (`--backend NAME`):

    class MyStore(Store):                      # every abstract method below (an incomplete one is refused)
        def __init__(self, d, meta, catalogue, bit): ...
        ...
    register_backend(Backend("mine", "one line for --help", MyStore,
                             describe=lambda path, uri, options: {...}))  # its fields of index.json

and import the module in utils/index/__init__.py (the backends register themselves on import). `Index`
never names a backend: it creates and opens every one through its `Backend` entry.

Crash points: each write step calls `crash_point(name)`; production code does nothing there. Tests set
`crash_hook` (a function called with the step's name) to crash or fail at a step: in-process with
monkeypatch, in a subprocess through tests/crash_launcher.py, which sets it and then runs the entry point.
"""
import abc
import inspect
import os
from dataclasses import dataclass
from typing import Callable

from utils.errors import UserError
from utils.registry import Registry

# the steps between durable writes, in order, where a test may crash the process
CRASH_POINTS = ("add:stored", "add:committed", "remove:committed", "remove:applied", "compact:stored",
                "compact:committed", "rebuild:stored", "rebuild:committed")


crash_hook = None  # tests only: a function called with each step's name (see the module docstring)


def crash_point(name):
    """Step `name` of a write is done (one of CRASH_POINTS): a test's `crash_hook` may crash here."""
    if crash_hook is not None:
        return crash_hook(name)
    return None


class EmptyIndex(UserError):
    """A search of an index that holds nothing (the service answers 409)."""


class StaleSnapshot(Exception):
    """A snapshot whose store changed under it (Milvus rows compacted by another writer): take a new one."""


class IndexDir:
    """The file names of an index directory, spelled only here."""

    META = "index.json"
    CATALOGUE = "catalogue.sqlite"
    SEGMENTS = "segments"
    UPLOADS = "uploads"  # images added through the service's POST /index/add

    def __init__(self, path):
        self.path = os.fspath(path)
        self.meta = os.path.join(self.path, self.META)
        self.catalogue = os.path.join(self.path, self.CATALOGUE)
        self.segments = os.path.join(self.path, self.SEGMENTS)
        self.uploads = os.path.join(self.path, self.UPLOADS)

    def segment(self, name):
        return os.path.join(self.segments, name)


class Store(abc.ABC):
    """The code store of one open index. `Index` holds the catalogue (items, metadata) and calls these; a
    write's catalogue transaction is passed in as `db` (the catalogue's write connection, inside
    `Catalogue.transaction()`), so the store's part of a write commits or rolls back with it."""

    @abc.abstractmethod
    def __init__(self, d, meta, catalogue, bit):
        """`d` IndexDir, `meta` the index.json fields, `catalogue` Catalogue, `bit` the code length. Makes
        the backend's storage on first open (a Milvus collection); UserError when it cannot be used."""

    @abc.abstractmethod
    def close(self):
        """Release what the store holds (clients, caches)."""

    @abc.abstractmethod
    def recover(self, db):
        """Inside a write transaction, first: clear what a crashed write of the store left behind."""

    @abc.abstractmethod
    def write(self, ids, packed, db, delta=False):
        """Inside the add's transaction: store the packed codes of the new ids → a token for commit /
        abandon / after_commit. `delta`: small frequent adds (the service's uploads)."""

    @abc.abstractmethod
    def commit(self, db, token):
        """Inside the add's transaction, last: record the stored codes in the catalogue (if the store does)."""

    @abc.abstractmethod
    def after_commit(self, token):
        """After the add's commit: drop what the new state no longer uses."""

    @abc.abstractmethod
    def abandon(self, token):
        """The add's transaction failed: undo `write` (best effort; `recover` clears the rest)."""

    @abc.abstractmethod
    def delete(self, ids):
        """After the remove's commit (the items are tombstoned): drop their codes, if the store must."""

    @abc.abstractmethod
    def merge_small(self, fanout):
        """After an add: merge small pieces of storage as they pile up (or nothing)."""

    @abc.abstractmethod
    def snapshot(self, engine="auto"):
        """An immutable view of the committed state: `search(packed, k)` → (distances, ids) by (distance,
        id); `search_radius(packed, radius, max_results)` → [RadiusHits]; `len()`; `generation` (the
        catalogue's when read); `memory_bytes` (None when held elsewhere). May raise StaleSnapshot."""

    @abc.abstractmethod
    def compact(self):
        """Drop tombstoned items (catalogue rows and codes) → (items kept, items dropped)."""

    @abc.abstractmethod
    def rebuild(self, fingerprint, encode_items, log=print):
        """Re-encode every alive item (`encode_items(ids, stored paths) -> packed`) and record `fingerprint`
        in the same commit → the number of items."""

    @abc.abstractmethod
    def info(self, n_rows):
        """The store's fields of `Index.info()` (at least `memory_bytes` and `engine`)."""


def no_meta(path, uri, options):
    """The index.json fields of a backend that needs none beyond the common ones."""
    return {}


@dataclass(frozen=True)
class Backend:
    name: str  # the --backend value, recorded in index.json
    summary: str
    store: type  # a Store subclass: store(IndexDir, meta, Catalogue, bit)
    describe: Callable = no_meta  # (index path, --uri or None, options) -> its fields of index.json
    options: tuple = ()  # keys of Index.create's `extra` that are the backend's options, not catalogue metadata

    def open(self, d, meta, catalogue, bit):
        return self.store(d, meta, catalogue, bit)


BACKENDS = Registry("index backend")


def register_backend(backend):
    """Register a storage backend; its store must implement every method of `Store`."""
    if not (isinstance(backend.store, type) and issubclass(backend.store, Store)) or inspect.isabstract(backend.store):
        missing = sorted(getattr(backend.store, "__abstractmethods__", ())) or ["is not a Store subclass"]
        raise TypeError(f"index backend {backend.name!r}: {backend.store!r} does not implement the Store "
                        f"contract ({', '.join(missing)})")
    return BACKENDS.add(backend)


def get_backend(name, flag="--backend"):
    if name not in BACKENDS:
        raise UserError(f"{flag} {name}: choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name]


def is_index(path):
    return os.path.isfile(IndexDir(path).meta)
