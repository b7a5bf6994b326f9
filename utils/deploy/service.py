"""The retrieval service's logic, without HTTP: the searchers behind the routes (a database list or an
index), the thumbnail cache, request counts, and the decoding and checking of what a request sends
(k, radius, labels, the admin token, the uploaded image). deploy/serving/app.py is the Flask layer over
this (routes, status codes) and the CLI; utils/deploy/server.py runs it.

    service = build_service(args)         # the model and the database codes, or the index
    service.search(pil_image, k)          # -> {"code", "bits", "results": [{rank, distance, id, path, labels}]}

Results name their item by `id`: the position in the database list (list mode) or the index's stable
item id (--index); `/image/<id>` takes the same value. (Earlier answers also carried `index` with the same
value; it is gone.) `rank` is the position in the answer, 1 = closest.
"""
import collections
import hashlib
import hmac
import os
import re
import threading

from utils.data.images import ImageError, open_image, thumbnail_jpeg
from utils.errors import UserError

THUMB_SIZE = 256
THUMB_CACHE = 512  # thumbnails kept in memory (about 10-20 KB each)
ADMIN_ENV = "HASHING_ADMIN_TOKEN"


# ------------------------------------------------------------------------------------------ caches
class LRUBytes:
    """A small thread-safe least-recently-used cache of bytes."""

    def __init__(self, capacity):
        self.capacity, self.items, self.lock = capacity, collections.OrderedDict(), threading.Lock()

    def get(self, key, make):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        value = make()
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.capacity:
                self.items.popitem(last=False)
        return value


class Thumbnails:
    """JPEG thumbnails of database images (at most `size` px), the last `capacity` kept in memory."""

    def __init__(self, size=THUMB_SIZE, capacity=THUMB_CACHE):
        self.size, self.cache = size, LRUBytes(capacity)

    def jpeg(self, path):
        """→ JPEG bytes; ImageError when the file cannot be read as an image."""
        return self.cache.get(path, lambda: thumbnail_jpeg(path, self.size))


class Counts:
    """Requests served by route, counted from the server's worker threads (under a lock)."""

    def __init__(self):
        self._counts, self._lock = collections.Counter(), threading.Lock()

    def add(self, key):
        with self._lock:
            self._counts[key] += 1

    def as_dict(self):
        with self._lock:
            return dict(self._counts)


# ------------------------------------------------------------------------------------------ requests
class BadRequest(Exception):
    """What a request sent is not acceptable: `status` (400, 403, 413) and the message for the client."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


def parse_k(raw, default_k, max_k):
    raw = (raw or "").strip() or str(default_k)
    try:
        k = int(raw)
    except ValueError:
        raise BadRequest(f"k must be a whole number, got {raw!r}")
    if not 1 <= k <= max_k:
        raise BadRequest(f"k must be between 1 and {max_k}, got {k}")
    return k


def parse_radius(raw):
    """None (a top-k search) or the Hamming radius of a radius lookup."""
    raw = (raw or "").strip()
    if not raw:
        return None
    if not re.fullmatch(r"[0-9]{1,4}", raw):
        raise BadRequest(f"radius must be a whole number >= 0, got {raw!r}")
    return int(raw)


def parse_labels(raw):
    """"0,3" (or "0 3") → [0, 3]; "" → None."""
    raw = (raw or "").strip()
    try:
        return [int(t) for t in raw.replace(",", " ").split()] if raw else None
    except ValueError:
        raise BadRequest(f"labels must be label indices such as '0,3', got {raw!r}")


def parse_item(raw, digits=12):
    """An item id of a route (`/image/<id>`, `DELETE /index/<id>`), or None when it is not one."""
    return int(raw) if re.fullmatch(r"[0-9]{1,%d}" % digits, raw) else None


def too_large_message(max_upload_mb):
    return f"upload too large: the limit is {max_upload_mb:g} MB (--max-upload-mb)"


def decode_upload(data, filename, max_bytes, max_upload_mb, max_pixels):
    """The bytes read of an uploaded image (at most max_bytes + 1) → PIL image, or BadRequest (413 when
    too large, 400 when not an image or too many pixels)."""
    if len(data) > max_bytes:
        raise BadRequest(too_large_message(max_upload_mb), 413)
    try:
        return open_image(data, max_pixels=max_pixels)
    except ImageError as exc:
        raise BadRequest(f"{filename or 'upload'}: {exc}")


def check_admin(admin_token, authorization, x_admin_token, has_index):
    """BadRequest (403, or 400 without an index) unless the request carries the admin token, given as
    `Authorization: Bearer <token>` or `X-Admin-Token`."""
    if not admin_token:
        raise BadRequest(f"admin routes are disabled: start the service with --admin-token (or ${ADMIN_ENV})", 403)
    auth = authorization or ""
    given = auth[7:] if auth.startswith("Bearer ") else (x_admin_token or "")
    if not hmac.compare_digest(given.encode(), admin_token.encode()):
        raise BadRequest("admin route: missing or wrong token (header 'Authorization: Bearer <token>')", 403)
    if not has_index:
        raise BadRequest("the service was started without --index: there is no index to change")


# ------------------------------------------------------------------------------------------ services
def result(hit, path):
    """One entry of a /search answer."""
    return {"rank": hit.rank, "distance": hit.distance, "id": hit.id, "path": path, "labels": hit.labels}


def radius_fields(radius, info):
    """The radius lookup's fields of a /search answer: the radius, how many items are within it (null where
    the backend cannot tell: Milvus when capped), whether k cut the list, and the algorithm that answered."""
    return {"radius": int(radius), "total": info.total, "capped": bool(info.capped), "algorithm": info.algorithm}


class Service:
    """The searcher behind the routes. Encoding and ranking (utils.deploy.searcher.Searcher.search, the same
    code as predict.py) run under one lock: Paddle predictors and dygraph models must not be called
    from several threads at once, and numba's default threading layer refuses concurrent parallel
    calls. Reading and decoding uploads, and thumbnails, run in parallel in the worker threads.
    `runtime`: what runs the model, for /health (paddle, onnx, onnx-int8, dygraph, index)."""

    has_index = False

    def __init__(self, searcher, runtime):
        from utils.retrieval import codes_to_hex

        self.searcher, self.runtime = searcher, runtime
        self.database, self.model = searcher.database, searcher.model
        self._hex = codes_to_hex
        self._lock = threading.Lock()

    def warm_up(self, calls=3):
        """A few searches with a blank image, so that the first clients do not pay for the predictor's
        first runs and the ranking kernel's compilation (or cache load)."""
        from PIL import Image

        blank = Image.new("RGB", (self.model.preprocess.resize_size,) * 2)
        for _ in range(calls):
            self.search(blank, 1)

    def search(self, image, k):
        """PIL image → the /search answer (paths relative to the image root, as in the list)."""
        with self._lock:
            code, found = self.searcher.search(image, min(k, self.size()))
        paths = self.database.list.paths
        return {"code": self._hex(code.reshape(1, -1))[0], "bits": int(self.model.bit),
                "results": [result(hit, paths[hit.id]) for hit in found]}

    def search_radius(self, image, radius, max_results):
        """PIL image → the /search answer of a radius lookup: every database image within `radius`."""
        with self._lock:
            code, found, info = self.searcher.search_radius(image, radius, max_results)
        paths = self.database.list.paths
        return {"code": self._hex(code.reshape(1, -1))[0], "bits": int(self.model.bit),
                "results": [result(hit, paths[hit.id]) for hit in found], **radius_fields(radius, info)}

    def size(self):
        return len(self.database.codes)

    def health(self):
        return {"database_size": self.size(), "list_size": len(self.database.list)}

    def stats(self):
        return {"database": self.database.list.list_file, "database_size": self.size()}

    def image_path(self, key):
        """(the file behind /image/<key> (a list position), None) or (None, why not)."""
        pos = parse_item(key)
        if pos is None or not 0 <= pos < len(self.database.list):
            return None, f"no database image {key!r}: the id is a list position, 0 to {len(self.database.list) - 1}"
        return self.database.path(pos), None

    def close(self):
        pass


class IndexService:
    """The same routes over an index (utils.deploy.indexing.IndexSearcher), plus the admin writes. A search
    takes the current snapshot once; the searcher renews it when the index's generation moved on (a write
    of this service, or of any other process: scripts/index.py add / remove / compact), so other writers'
    changes are seen within `refresh_seconds` without a restart."""

    has_index = True

    def __init__(self, searcher, runtime):
        from utils.retrieval import codes_to_hex

        self.searcher, self.runtime, self.model = searcher, runtime, searcher.model
        self.index = searcher.index
        self._hex = codes_to_hex
        self._lock = threading.Lock()  # the model (see Service)
        self._write_lock = threading.Lock()  # this process's writes; other processes' wait in the catalogue

    warm_up = Service.warm_up

    def search(self, image, k):
        from utils.retrieval import unpack_codes

        snapshot = self.searcher.snapshot  # one consistent state for this query (renewed outside the lock)
        with self._lock:
            packed = self.searcher.encode([image])
            ranked = self.searcher.rank(packed, k, snapshot)
        if ranked is None:  # the snapshot is behind a removal: renew it (not under the model lock), rank again
            snapshot = self.searcher.refresh()
            with self._lock:
                ranked = self.searcher.rank(packed, k, snapshot)
            if ranked is None:  # removed in between: leave those out
                snapshot = self.searcher.refresh()
                with self._lock:
                    ranked = self.searcher.rank_alive(packed, k, snapshot)
        found = self.searcher.hits(*ranked)
        code = unpack_codes(packed, self.model.bit)[0]
        return {"code": self._hex(code.reshape(1, -1))[0], "bits": int(self.model.bit),
                "results": [result(h, h.stored) for h in found]}

    def search_radius(self, image, radius, max_results):
        """The /search answer of a radius lookup over the index (see IndexSearcher.search_radius)."""
        snapshot = self.searcher.snapshot
        with self._lock:
            code, found, info = self.searcher.search_radius(image, radius, max_results, snapshot)
        return {"code": self._hex(code.reshape(1, -1))[0], "bits": int(self.model.bit),
                "results": [result(h, h.stored) for h in found], **radius_fields(radius, info)}

    def size(self):
        return len(self.searcher.snapshot)

    def health(self):
        return {"database_size": self.size(), "index": self.index.dir.path}

    def stats(self):
        info = self.index.info()
        snapshot = self.searcher.snapshot
        info["searchable"] = len(snapshot)
        info["snapshot_generation"] = snapshot.generation
        return info

    def image_path(self, key):
        item_id = parse_item(key)
        item = self.index.describe([item_id]).get(item_id) if item_id is not None else None
        if item is None:
            return None, f"no item {key!r} in the index (ids come from /search results)"
        return self.index.file(item[0]), None

    def add(self, data, image, labels=None):
        """Store an uploaded image under the index's uploads/ (named by its content hash) and index it
        (into the delta segment). → (id, stored path, added?)"""
        from utils.fileio import atomic_path
        from utils.index import IndexDir

        digest = hashlib.sha256(data).hexdigest()
        folder = IndexDir(self.index.dir.path).uploads
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, digest + ".img")
        key = self.index.key(path)
        with self._write_lock:
            known = self.index.find(key)
            if known is not None:
                return known, key, False
            if not os.path.isfile(path):
                with atomic_path(path) as tmp:
                    with open(tmp, "wb") as f:
                        f.write(data)
            with self._lock:
                code = self.searcher.encode([image])
            try:
                ids = self.index.add(code, [path], [labels], [digest], delta=True)
            except UserError:  # another process added the same upload meanwhile
                known = self.index.find(key)
                if known is None:
                    raise
                return known, key, False
            self.searcher.refresh()
        return int(ids[0]), key, True

    def delete(self, item_id):
        """→ True when removed, False when there is no such item."""
        with self._write_lock:
            removed, _ = self.index.remove([item_id], missing_ok=True)
            if removed:
                self.searcher.refresh()
        return bool(removed)

    def close(self):
        self.index.close()


def build_service(args, log=print):
    """Load the model and the database codes (from the cache, or encoded now), or open the index, from the
    service's flags (`args`: index, engine, pretrained, model_dir, runtime, use_gpu, data_path,
    save_path, dataset, list_dir, batch_size, skip_bad_images). What a failed start opened is closed again."""
    if args.index:
        from utils.deploy.indexing import open_index_search

        searcher = open_index_search(args.index, args.pretrained, args.model_dir,
                                     args.runtime if args.model_dir else None, args.use_gpu,
                                     getattr(args, "engine", None), data_path=args.data_path)
        try:
            log(f"----- Index {args.index}: {len(searcher)} items, {searcher.model.bit}-bit codes of "
                f"{searcher.model.source}")
            service = IndexService(searcher, args.runtime if args.model_dir else "index")
            if len(searcher):
                service.warm_up()
        except BaseException:
            searcher.index.close()
            raise
        return service
    from utils.deploy.searcher import open_search

    searcher = open_search(args.pretrained, args.model_dir, args.runtime, args.use_gpu, None, args.save_path,
                           args.dataset, args.data_path, args.list_dir, args.batch_size, args.skip_bad_images, log=log)
    service = Service(searcher, args.runtime if args.model_dir else "dygraph")
    service.warm_up()
    return service
