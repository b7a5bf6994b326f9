"""The contract between the index (utils/index/__init__.py: `Index`, the only door) and its storage
backends (embedded.py, milvus.py): the names of an index directory, the backend registry entry, the
errors a store raises, and the crash points of its writes. A backend module imports this module and the
catalogue, never the package facade that imports it (tests/test_layers.py checks for cycles).

A store (what `Backend.open(IndexDir, meta, Catalogue, bit)` returns) offers: `add`, `remove`,
`compact`, `recover`, `rebuild`, `snapshot(engine)` (an immutable view with `search(packed, k)` →
(distances, ids) by (distance, id), `search_radius(packed, radius, max_results)` → [RadiusHits],
`generation`, `memory_bytes`) and `info(n_items)`.
"""
import os
from dataclasses import dataclass
from typing import Callable

from utils.errors import UserError
from utils.registry import Registry

CRASH_ENV = "HASHING_INDEX_CRASH_AT"
# the steps between durable writes, in order, where a test may crash the process
CRASH_POINTS = ("add:stored", "add:committed", "remove:committed", "remove:applied", "compact:stored",
                "compact:committed", "rebuild:stored", "rebuild:committed")


crash_hook = None  # tests: a function called with each step's name instead of the environment switch


def crash_point(name):
    """Kill the process at step `name` when HASHING_INDEX_CRASH_AT says so (tests of crash safety):
    `name` crashes at the first pass, `name@N` at the N-th, `name@N:SIGTERM` sends that signal instead of
    SIGKILL (tests of a clean stop: the process's own handler then runs, once). In-process tests set
    `crash_hook` instead (monkeypatch), which every step calls, whichever module it is in."""
    if crash_hook is not None:
        return crash_hook(name)
    want = os.environ.get(CRASH_ENV)
    if not want:
        return
    step, _, when = want.partition("@")
    if step != name:
        return
    nth, _, sig = when.partition(":")
    crash_point.seen[name] = crash_point.seen.get(name, 0) + 1
    if crash_point.seen[name] == int(nth or 1) or (not sig and crash_point.seen[name] > int(nth or 1)):
        import signal

        os.kill(os.getpid(), getattr(signal, sig or "SIGKILL"))


crash_point.seen = {}


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


@dataclass(frozen=True)
class Backend:
    name: str  # the --backend value
    summary: str
    open: Callable  # (IndexDir, meta dict, Catalogue, bit) -> store


BACKENDS = Registry("index backend")


def is_index(path):
    return os.path.isfile(IndexDir(path).meta)
