"""Images in and out of an index (utils.index) with a model: the encoding side of scripts/index.py, and
search by image for predict.py --index and the service.

    model = resolve_model("output/hashnet_64")            # a checkpoint, a run folder or an exported model
    index = create_index(model, "output/index", backend="embedded", source=...)
    stats = sync(index, model, scan_sources(images="photos"))   # encodes only what the index lacks
    searcher = IndexSearcher(Index("output/index"), model); code, hits = searcher.search(pil_image, 10)

The searcher follows other writers: before a search it compares the index's generation with its
snapshot's (at most every `refresh_seconds`) and swaps in a new snapshot when they differ; hits removed
from the index after the snapshot was taken are never returned.

The model is recorded in the index (where it is, and the fingerprint of its weights, preprocessing and
code length), so later commands need only --index; a different model is refused (or, with --rebuild,
re-encodes the index). Images are encoded in chunks, each committed as it finishes: an interrupted build
(Ctrl-C, SIGTERM, a kill) resumes where it stopped when run again. Preprocessing and encoding are the
ones every other entry point uses (`utils.deploy.encode_images`).
"""
import os
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from utils.data.images import IMAGE_EXTENSIONS, list_image_files
from utils.errors import UserError
from utils.stop_signal import StopSignal
from utils.index import Index, StaleSnapshot
from utils.retrieval import binarize, pack_codes
from utils.cache_file import file_sha256





@dataclass(frozen=True)
class Source:
    path: str  # the image file: the image root joined with the list's path (stored relative to the root)
    labels: tuple = None  # label indices, or None


def scan_sources(list_file=None, data_path=None, images=None, allow_absolute=False):
    """The images to index: a HashNet list under an image root (with labels), or every image file under
    a folder (sorted, no labels). → (sources, description for the index's record)."""
    if images and list_file:
        raise UserError("give either --images DIR or --list L --data-path DIR, not both")
    if images:
        if not os.path.isdir(images):
            raise UserError(f"--images {images}: directory not found")
        found = list_image_files(images)
        if not found:
            raise UserError(f"--images {images}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found there")
        return [Source(os.path.normpath(p)) for p in found], {"images": os.path.abspath(images)}
    if not list_file:
        raise UserError("say what to index: --images DIR, or --list L --data-path DIR")
    from utils.data.lists import read_list

    if not data_path or not os.path.isdir(data_path):
        raise UserError(f"--data-path {data_path}: directory not found; point it at the image root of {list_file}")
    lst = read_list(list_file, allow_absolute=allow_absolute)
    sources = [Source(os.path.normpath(os.path.join(data_path, p)), tuple(int(c) for c in np.flatnonzero(row)))
               for p, row in zip(lst.paths, lst.labels)]
    return sources, {"list": os.path.abspath(list_file), "data_path": os.path.abspath(data_path)}


# ----------------------------------------------------------------------------------------- models
def model_fingerprint(model):
    return {"weights": model.weights_fingerprint, "preprocess": model.preprocess.to_dict(), "bit": int(model.bit)}


def resolve_model(path, runtime="paddle", use_gpu=False, flag="--model"):
    """A searcher.Model from a checkpoint file, an exported model directory (inference.yml) or a training
    output folder (its best.pdparams, see find_checkpoint). → (model, record for the index)."""
    from utils.deploy.encoders import YML
    from utils.deploy.searcher import find_checkpoint, load_model

    if not path or not os.path.exists(path):
        raise UserError(f"{flag} {path}: not found; give a checkpoint (best.pdparams), a training output folder "
                        "or an exported model directory (export_model.py)")
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, YML)):
        record = {"model_dir": os.path.abspath(path), "runtime": runtime}
        return load_model(model_dir=path, runtime=runtime, use_gpu=use_gpu), record
    ckpt = find_checkpoint(path) if os.path.isdir(path) else path
    return load_model(pretrained=ckpt, use_gpu=use_gpu), {"pretrained": os.path.abspath(ckpt)}


def index_model(index, model_path=None, runtime=None, use_gpu=False, rebuild=False):
    """The model for an index: `model_path` when given (checked against the index's fingerprint unless
    `rebuild`), else the one recorded in the index."""
    record = index.model_record()
    if model_path is None:
        path = record.get("model_dir") or record.get("pretrained")
        if not path:
            raise UserError(f"--index {index.dir.path}: no model recorded; pass --model M")
        if not os.path.exists(path):
            raise UserError(f"--index {index.dir.path}: its model {path} is gone; pass --model M (the same model, "
                            "or another one with --rebuild)")
        model, record = resolve_model(path, runtime or record.get("runtime") or "paddle", use_gpu, "the index's model")
    else:
        model, record = resolve_model(model_path, runtime or "paddle", use_gpu)
    if not rebuild:
        index.check_fingerprint(model_fingerprint(model), f"the model {model.source}")
    return model, record


def create_index(model, record, out, backend="embedded", uri=None, source=None):
    """A new index; its image root is the source's (--data-path of a list, or the --images folder)."""
    source = source or {}
    return Index.create(out, model.bit, model_fingerprint(model), backend, uri,
                        extra={"model": record, "source": source},
                        root=source.get("data_path") or source.get("images"))


def check_root(index):
    """UserError when the image root the index records is gone (the images moved) while items live there."""
    if index.root_missing():
        raise UserError(f"--index {index.dir.path}: its image root {index.root} is gone (moved?); record the new "
                        f"one with: scripts/index.py relocate --index {index.dir.path} --root NEW "
                        "(or pass --data-path NEW)")


def encode_packed(model, paths, batch_size=32, on_error=None):
    """(packed codes, kept paths) of image files, through the one preprocessing and encoding path."""
    from utils.deploy.encoders import encode_images

    raw, kept = encode_images(model.encoder, list(paths), model.preprocess, batch_size, on_error=on_error)
    return pack_codes(binarize(raw)) if len(kept) else np.zeros((0, (model.bit + 7) // 8), np.uint8), kept


# ----------------------------------------------------------------------------------------- stopping
def stop_request():
    """SIGINT / SIGTERM during a build or add: the first asks to stop after the chunk being encoded (it is
    committed), a second one stops at once (the index stays as the last commit left it). Installed after
    Paddle is imported, so these handlers replace the ones Paddle sets at import."""
    return StopSignal("stopping after the current chunk (again to stop at once)")


# ----------------------------------------------------------------------------------------- sync
@dataclass
class SyncStats:
    added: int = 0  # new items committed (changed images included)
    changed: int = 0  # of which replace an item whose file content changed (the old id is tombstoned)
    unchanged: int = 0  # already in the index with the same content: not encoded
    bad: list = field(default_factory=list)  # (path, reason) skipped with --skip-bad-images
    remaining: int = 0  # not done because a stop was requested
    stopped_by: str = None

    def line(self):
        parts = [f"added {self.added}" + (f" ({self.changed} changed images re-encoded)" if self.changed else ""),
                 f"{self.unchanged} already in the index"]
        if self.bad:
            parts.append(f"skipped {len(self.bad)} unreadable (first: {self.bad[0][0]}: {self.bad[0][1]})")
        return ", ".join(parts)


def sync(index, model, sources, chunk_size=256, batch_size=32, skip_bad=False, stop=None, progress=True):
    """Encode and add the sources the index lacks (by path and content hash), `chunk_size` images per
    commit, in source order. A file whose content changed gets a new id and its old id is tombstoned in
    the same commit. Unreadable files: UserError naming the file (nothing of that chunk is committed),
    or counted and skipped with `skip_bad`."""
    stats = SyncStats()
    check_root(index)
    known = index.alive_paths()
    todo = []

    def bad(path, reason):
        if not skip_bad:
            raise UserError(f"{path}: {reason}; fix or remove the file, or pass --skip-bad-images")
        stats.bad.append((path, reason))

    for s, key in zip(sources, index.keys([s.path for s in sources])):
        try:
            digest = file_sha256(s.path)
        except OSError as exc:
            bad(s.path, f"cannot read ({exc.strerror or exc})")
            continue
        old = known.get(key)
        if old and old[1] == digest:
            stats.unchanged += 1
        else:
            todo.append((s, digest, old[0] if old else None))
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="img", desc="encoding", file=sys.stderr, disable=None)
    try:
        for start in range(0, len(todo), chunk_size):
            if stop is not None and stop.requested:
                stats.remaining, stats.stopped_by = len(todo) - start, stop.signal_name
                break
            chunk = todo[start:start + chunk_size]
            by_path = {s.path: (s, digest, old) for s, digest, old in chunk}
            packed, kept = encode_packed(model, [s.path for s, _, _ in chunk], batch_size, on_error=bad)
            rows = [by_path[p] for p in kept]
            replaces = [old for _, _, old in rows if old is not None]
            index.add(packed, kept, [s.labels for s, _, _ in rows], [d for _, d, _ in rows], replaces=replaces)
            stats.added += len(kept)
            stats.changed += len(replaces)
            if bar:
                bar.update(len(chunk))
    finally:
        if bar:
            bar.close()
    return stats


def rebuild(index, model, record, batch_size=32, log=print):
    """Re-encode every item of the index with `model` (same ids), then record the model."""
    def encode_items(ids, paths):
        packed, kept = encode_packed(model, paths, batch_size)
        return packed

    n = index.replace_codes(model_fingerprint(model), encode_items, log)
    index.set_model_record(record)
    return n


# ----------------------------------------------------------------------------------------- search
class IndexSearcher:
    """Search an index by image. A search uses one snapshot (one consistent state); the snapshot is
    replaced whole when the index's generation moved on (a write by this process or any other), checked
    at most every `refresh_seconds` and by one thread at a time (the others go on with the current one).
    Hits carry the item id in `Hit.id`, the image file in `Hit.path`, the path as stored (as the list
    writes it) in `Hit.stored`."""

    def __init__(self, index, model, engine=None, refresh_seconds=0.5):
        index.check_fingerprint(model_fingerprint(model), f"the model {model.source}")
        self.index, self.model, self.engine = index, model, engine
        self.refresh_seconds = refresh_seconds
        self._refreshing, self._swap = threading.Lock(), threading.Lock()
        self._checked = time.monotonic()
        self._snapshot = index.snapshot(engine)

    def refresh(self):
        """A new snapshot of the committed state, swapped in (one assignment) unless a newer one already
        was (two threads refreshing at once: the later state wins)."""
        snap = self.index.snapshot(self.engine)
        with self._swap:
            if (snap.generation or 0) >= (self._snapshot.generation or 0):
                self._snapshot = snap
            return self._snapshot

    @property
    def snapshot(self):
        """The current snapshot, renewed first when the index changed since (see the class)."""
        now = time.monotonic()
        if now - self._checked >= self.refresh_seconds and self._refreshing.acquire(blocking=False):
            try:
                self._checked = now
                if self.index.generation() != self._snapshot.generation:
                    self.refresh()
            finally:
                self._refreshing.release()
        return self._snapshot

    def __len__(self):
        return len(self.snapshot)

    def encode(self, images):
        """PIL images → packed codes."""
        batch = np.stack([self.model.preprocess(img) for img in images])
        return pack_codes(binarize(self.model.encoder.run(batch)))

    def hits(self, dist, ids, items=None):
        """Hits of the ids that are in the index now (`items`: Index.alive of them)."""
        from utils.deploy.searcher import Hit

        items = self.index.alive(ids) if items is None else items
        kept = [(int(d), int(i)) for d, i in zip(dist, ids) if int(i) in items]
        return [Hit(rank, d, i, self.index.file(items[i][0]), list(items[i][1] or []), items[i][0])
                for rank, (d, i) in enumerate(kept, start=1)]

    def rank(self, packed, k, snapshot):
        """Packed query codes (1, bytes) → (dist, ids, alive items) on `snapshot`, at most k (and its
        size), or None when the snapshot is behind the catalogue: a hit the catalogue no longer holds
        alive (removed after the snapshot was taken), or a Milvus collection changed under it."""
        try:
            dist, ids = snapshot.search(packed, min(int(k), len(snapshot)) if len(snapshot) else int(k))
        except StaleSnapshot:
            return None
        items = self.index.alive(ids[0])
        if not all(int(i) in items for i in ids[0]):
            return None
        return dist[0], ids[0], items

    def search(self, image, k, snapshot=None):
        """→ (code ±1 (bit,), [Hit]) closest first, ties by id; at most k (and the snapshot's size). A
        snapshot behind the catalogue (see rank) is renewed and the search run again; what is gone then
        (removed in between) is left out."""
        from utils.retrieval import unpack_codes

        packed = self.encode([image])
        found = self.rank(packed, k, self.snapshot if snapshot is None else snapshot)
        if found is None:
            found = self.rank_again(packed, k)
        return unpack_codes(packed, self.model.bit)[0], self.hits(*found)

    def within(self, packed, radius, max_results, snapshot):
        """Packed query codes (1, bytes) → (RadiusHits with item ids, alive items) on `snapshot`, or None when
        the snapshot is behind the catalogue (as rank)."""
        try:
            found = snapshot.search_radius(packed, radius, max_results)[0]
        except StaleSnapshot:
            return None
        items = self.index.alive(found.indices)
        if not all(int(i) in items for i in found.indices):
            return None
        return found, items

    def search_radius(self, image, radius, max_results=None, snapshot=None):
        """→ (code ±1 (bit,), [Hit] of every item within Hamming distance `radius`, by (distance, id), at most
        `max_results`, RadiusHits: total within the radius (None where unknown), capped, algorithm). A
        snapshot behind the catalogue is renewed, as in search."""
        from utils.retrieval import unpack_codes

        packed = self.encode([image])
        found = self.within(packed, radius, max_results, self.snapshot if snapshot is None else snapshot)
        if found is None:
            hits = self.refresh().search_radius(packed, radius, max_results)[0]
            found = hits, self.index.alive(hits.indices)
        hits, items = found
        return unpack_codes(packed, self.model.bit)[0], self.hits(hits.distances, hits.indices, items), hits

    def rank_again(self, packed, k):
        """rank() on a renewed snapshot, keeping only what is alive (a removal may commit in between)."""
        return self.rank_alive(packed, k, self.refresh())

    def rank_alive(self, packed, k, snapshot):
        dist, ids = snapshot.search(packed, min(int(k), len(snapshot)) if len(snapshot) else int(k))
        return dist[0], ids[0], self.index.alive(ids[0])


def open_index_search(index_path, pretrained=None, model_dir=None, runtime=None, use_gpu=False, engine=None,
                      data_path=None):
    """predict.py --index and the service: the index (its images under `data_path` when they moved), its
    model (or the one given, which must match). Nothing stays open when it fails."""
    index = Index(index_path, data_path=data_path)
    try:
        model, _ = index_model(index, model_dir or pretrained, runtime, use_gpu)
        return IndexSearcher(index, model, engine)
    except BaseException:
        index.close()
        raise
