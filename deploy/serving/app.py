"""Retrieval service: query the database by image over HTTP, and a web page to try it in a browser.

    python deploy/serving/app.py --model-dir output/inference --data_path datasets/coco --list-dir data/coco
                                 [--pretrained CKPT instead of --model-dir] [--backend paddle|onnx]
                                 [--save_path ./output] [--host 127.0.0.1] [--port 8866] [--max-upload-mb 10]
    python deploy/serving/app.py --index output/index [--admin-token T]   # an index (scripts/index.py)

At start the model and the database codes are loaded once; the codes come from the same cache as
predict.py (`<save_path>/database_code_<bit>.npy`, rebuilt when the weights, the list, the image root
or the preprocessing changed). Then:

    GET  /               the web page (upload or drop an image, see its top-k)
    POST /search         multipart field `image`, `k` (form or query, default 10, at most --max-k)
                         -> {"code": hex, "bits": N, "results": [{rank, distance, index, path, labels}]}
    GET  /health         status, model, bits, database size
    GET  /stats          database size, requests served, uptime (with --index: the index's info too)
    GET  /image/<index>  JPEG thumbnail of the database image at list position <index> (--index: item id)
    POST /index/add      (--index, admin) multipart `image` [+ `labels` "0,3"]: store and index it -> {id, path}
    DELETE /index/<id>   (--index, admin) remove an item

The admin routes need the token of --admin-token (or $HASHING_ADMIN_TOKEN) in the header
`Authorization: Bearer <token>` (or `X-Admin-Token`); without a configured token they answer 403.
Searches run on a snapshot of the index that an add or a delete replaces whole, so a query never sees a
half-applied change; writes by other processes (scripts/index.py add / remove / compact) are seen
within 0.5 s (the index's generation is checked before a search). With --index, --data_path is the
index's image root when its images moved. SIGTERM (docker stop, systemd) and Ctrl-C stop accepting
connections, let the requests in flight finish, close the index, print one line and exit 0.

Errors are JSON `{"error": "..."}`: 400 (not an image, bad k, any other UserError with its message), 404
(no such route or index), 413 (upload larger than --max-upload-mb), 403 (admin route without the token),
409 (empty index), 503 (an admin write waited too long for another process's write); 500 is a bug,
logged with its traceback. Served by
waitress (a fixed pool of --threads worker threads, request bodies bounded and spooled to disk) when
installed, else by Flask's threaded server.
"""
import argparse
import collections
import os
import re
import socket
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from utils.data.images import ImageError, open_image, thumbnail_jpeg  # noqa: E402
from utils.errors import UserError, cli_entry  # noqa: E402
from utils.stop_signal import StopSignal  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
THUMB_SIZE = 256
THUMB_CACHE = 512  # thumbnails kept in memory (about 10-20 KB each)
ADMIN_ENV = "HASHING_ADMIN_TOKEN"


def parse_args(argv=None):
    from utils.deploy.searcher import add_database_args

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model-dir", "--model_dir", dest="model_dir", help="a model exported by export_model.py")
    src.add_argument("--pretrained", help="a training checkpoint (best.pdparams), run in Paddle's dynamic graph")
    p.add_argument("--index", help="search this index (scripts/index.py) instead of a database list; its model "
                                   "by default (--model-dir / --pretrained must be the same model)")
    p.add_argument("--admin-token", default=os.environ.get(ADMIN_ENV) or None,
                   help=f"enables POST /index/add and DELETE /index/<id> for this token (default ${ADMIN_ENV})")
    add_database_args(p)
    p.add_argument("--save_path", "--save-path", dest="save_path", default="./output",
                   help="folder of the database code cache (default %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8866, help="default %(default)s")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest accepted upload (default %(default)s)")
    p.add_argument("--max-k", type=int, default=100, help="largest k a client may ask for (default %(default)s)")
    p.add_argument("--max-pixels", type=int, default=40_000_000,
                   help="largest decoded image, width x height (default %(default)s; guards decompression bombs)")
    p.add_argument("--threads", type=int, default=4, help="request worker threads (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size when encoding the database")
    p.add_argument("--skip-bad-images", action="store_true", help="skip unreadable database images")
    p.add_argument("--use-gpu", action="store_true")
    args = p.parse_args(argv)
    if not (args.model_dir or args.pretrained or args.index):
        raise UserError("give --model-dir DIR, --pretrained CKPT or --index IDX")
    for name in ("max_upload_mb", "max_k", "max_pixels", "threads"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    return args


# ------------------------------------------------------------------------------------------ images
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


# ------------------------------------------------------------------------------------------ service
class Service:
    """The searcher behind the routes. Encoding and ranking (utils.deploy.searcher.Searcher.search, the same
    code as predict.py) run under one lock: Paddle predictors and dygraph models must not be called
    from several threads at once, and numba's default threading layer refuses concurrent parallel
    calls. Reading and decoding uploads, and thumbnails, run in parallel in the worker threads."""

    def __init__(self, searcher, backend):
        from utils.retrieval import codes_to_hex

        self.searcher, self.backend = searcher, backend
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
        results = [{"rank": hit.rank, "distance": hit.distance, "index": hit.index, "path": paths[hit.index],
                    "labels": hit.labels} for hit in found]
        return {"code": self._hex(code.reshape(1, -1))[0], "bits": int(self.model.bit), "results": results}

    def search_radius(self, image, radius, max_results):
        """PIL image → the /search answer of a radius lookup: every database image within `radius`."""
        with self._lock:
            code, found, info = self.searcher.search_radius(image, radius, max_results)
        paths = self.database.list.paths
        results = [{"rank": hit.rank, "distance": hit.distance, "index": hit.index, "path": paths[hit.index],
                    "labels": hit.labels} for hit in found]
        return {"code": self._hex(code.reshape(1, -1))[0], "bits": int(self.model.bit), "results": results,
                **radius_fields(radius, info)}

    def size(self):
        return len(self.database.codes)

    def health(self):
        return {"database_size": self.size(), "list_size": len(self.database.list)}

    def stats(self):
        return {"database": self.database.list.list_file, "database_size": self.size()}

    def image_path(self, key):
        """The file behind /image/<key> (a list position), or None."""
        pos = int(key) if re.fullmatch(r"[0-9]{1,12}", key) else -1
        if not 0 <= pos < len(self.database.list):
            return None, f"no database image {key!r}: the index is a list position, 0 to {len(self.database.list) - 1}"
        return self.database.path(pos), None

    def close(self):
        pass


def radius_fields(radius, info):
    """The radius lookup's fields of a /search answer: the radius, how many items are within it (null where
    the backend cannot tell: Milvus when capped), whether k cut the list, and the algorithm that answered."""
    return {"radius": int(radius), "total": info.total, "capped": bool(info.capped), "algorithm": info.algorithm}


class IndexService:
    """The same routes over an index (utils.deploy.indexing.IndexSearcher), plus the admin writes. A search
    takes the current snapshot once; the searcher renews it when the index's generation moved on (a write
    of this service, or of any other process: scripts/index.py add / remove / compact), so other writers'
    changes are seen within `refresh_seconds` without a restart."""

    def __init__(self, searcher, backend):
        from utils.retrieval import codes_to_hex

        self.searcher, self.backend, self.model = searcher, backend, searcher.model
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
        results = [{"rank": h.rank, "distance": h.distance, "id": h.index, "index": h.index, "path": h.stored,
                    "labels": h.labels} for h in found]
        return {"code": self._hex(code.reshape(1, -1))[0], "bits": int(self.model.bit), "results": results}

    def search_radius(self, image, radius, max_results):
        """The /search answer of a radius lookup over the index (see IndexSearcher.search_radius)."""
        snapshot = self.searcher.snapshot
        with self._lock:
            code, found, info = self.searcher.search_radius(image, radius, max_results, snapshot)
        results = [{"rank": h.rank, "distance": h.distance, "id": h.index, "index": h.index, "path": h.stored,
                    "labels": h.labels} for h in found]
        return {"code": self._hex(code.reshape(1, -1))[0], "bits": int(self.model.bit), "results": results,
                **radius_fields(radius, info)}

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
        item = self.index.describe([int(key)]).get(int(key)) if re.fullmatch(r"[0-9]{1,12}", key) else None
        if item is None:
            return None, f"no item {key!r} in the index (ids come from /search results)"
        return self.index.file(item[0]), None

    def add(self, data, image, labels=None):
        """Store an uploaded image under the index's uploads/ (named by its content hash) and index it
        (into the delta segment). → (id, stored path, added?)"""
        import hashlib

        from utils.fileio import atomic_path
        from utils.index import IndexDir

        digest = hashlib.sha256(data).hexdigest()
        folder = IndexDir(self.index.dir.path).uploads
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, digest + ".img")
        key = self.index.key(path)
        with self._write_lock:
            known = self.index.catalogue.alive_paths().get(key)
            if known:
                return known[0], key, False
            if not os.path.isfile(path):
                with atomic_path(path) as tmp:
                    with open(tmp, "wb") as f:
                        f.write(data)
            with self._lock:
                code = self.searcher.encode([image])
            try:
                ids = self.index.add(code, [path], [labels], [digest], delta=True)
            except UserError:  # another process added the same upload meanwhile
                known = self.index.catalogue.alive_paths().get(key)
                if not known:
                    raise
                return known[0], key, False
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


class Counts:
    """Requests served by route, counted from waitress's worker threads (under a lock)."""

    def __init__(self):
        self._counts, self._lock = collections.Counter(), threading.Lock()

    def add(self, key):
        with self._lock:
            self._counts[key] += 1

    def as_dict(self):
        with self._lock:
            return dict(self._counts)


def create_app(service, max_upload_mb=10.0, max_k=100, max_pixels=40_000_000, default_k=10, admin_token=None):
    """The Flask app over a Service or an IndexService."""
    from flask import Flask, jsonify, request, send_from_directory
    from PIL import Image
    from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

    # PIL's own guard (a warning above MAX_IMAGE_PIXELS, an error above twice that) must not be
    # stricter than ours; open_image(max_pixels=...) turns its warning into a 400
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, max_pixels)
    app = Flask(__name__, static_folder=os.path.join(HERE, "static"), static_url_path="/static")
    max_bytes = int(max_upload_mb * 1024 * 1024)
    app.config["MAX_CONTENT_LENGTH"] = max_bytes
    app.json.sort_keys = False
    thumbs = LRUBytes(THUMB_CACHE)
    started, counts = time.time(), Counts()

    def error(status, message):
        resp = jsonify({"error": message})
        resp.status_code = status
        return resp

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc):
        return error(413, f"upload too large: the limit is {max_upload_mb:g} MB (--max-upload-mb)")

    @app.errorhandler(HTTPException)
    def http_error(exc):
        return error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(UserError)
    def user_error(exc):  # bad input that reached the searcher or the index: the client's to fix
        from utils.index import EmptyIndex, IndexBusy

        if isinstance(exc, IndexBusy):  # another process's long write (a --rebuild): try again later
            counts.add("busy")
            resp = error(503, str(exc))
            resp.headers["Retry-After"] = "30"
            return resp
        counts.add("rejected")
        return error(409 if isinstance(exc, EmptyIndex) else 400, str(exc))

    @app.errorhandler(Exception)
    def internal_error(exc):  # a bug: logged with its traceback
        app.logger.error("unhandled error in %s %s", request.method, request.path, exc_info=exc)
        counts.add("error")
        return error(500, f"internal error ({type(exc).__name__})")

    @app.after_request
    def headers(resp):
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Content-Security-Policy"] = ("default-src 'self'; img-src 'self' blob: data:; "
                                                   "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
        return resp

    @app.get("/")
    def index():
        return send_from_directory(os.path.join(HERE, "static"), "index.html")

    @app.get("/health")
    def health():
        return jsonify({"status": "ok", "model": service.model.source, "backend": service.backend,
                        "bits": int(service.model.bit), **service.health(),
                        "max_k": max_k, "max_upload_mb": max_upload_mb})

    @app.get("/stats")
    def stats():
        return jsonify({**service.stats(), "requests": counts.as_dict(),
                        "uptime_seconds": round(time.time() - started, 1), "admin": bool(admin_token)})

    def admin_refusal():
        """None when the request carries the admin token, else the 403 answer."""
        import hmac

        if not admin_token:
            return error(403, "admin routes are disabled: start the service with --admin-token "
                              f"(or ${ADMIN_ENV})")
        auth = request.headers.get("Authorization", "")
        given = auth[7:] if auth.startswith("Bearer ") else request.headers.get("X-Admin-Token", "")
        if not hmac.compare_digest(given.encode(), admin_token.encode()):
            return error(403, "admin route: missing or wrong token (header 'Authorization: Bearer <token>')")
        if not isinstance(service, IndexService):
            return error(400, "the service was started without --index: there is no index to change")
        return None

    def read_image():
        """(bytes, PIL image) of the multipart field `image` under the upload limits, or an error answer."""
        upload = request.files.get("image")
        if upload is None:
            return None, error(400, "no image: send the query as multipart/form-data field 'image'")
        data = upload.read(max_bytes + 1)
        if len(data) > max_bytes:
            return None, too_large(None)
        try:
            return (data, open_image(data, max_pixels=max_pixels)), None
        except ImageError as exc:
            return None, error(400, f"{upload.filename or 'upload'}: {exc}")

    @app.post("/index/add")
    def index_add():
        refused = admin_refusal()
        if refused:
            return refused
        raw_labels = request.values.get("labels", "").strip()
        try:
            labels = [int(t) for t in raw_labels.replace(",", " ").split()] if raw_labels else None
        except ValueError:
            return error(400, f"labels must be label indices such as '0,3', got {raw_labels!r}")
        got, err = read_image()
        if err:
            return err
        item_id, path, added = service.add(got[0], got[1], labels)
        counts.add("add")
        return jsonify({"id": item_id, "path": path, "added": added, "database_size": service.size()})

    @app.delete("/index/<item>")
    def index_delete(item):
        refused = admin_refusal()
        if refused:
            return refused
        if not re.fullmatch(r"[0-9]{1,18}", item) or not service.delete(int(item)):
            return error(404, f"no item {item!r} in the index")
        counts.add("delete")
        return jsonify({"removed": int(item), "database_size": service.size()})

    @app.post("/search")
    def search():
        raw_k = request.values.get("k", "").strip() or str(default_k)
        try:
            k = int(raw_k)
        except ValueError:
            return error(400, f"k must be a whole number, got {raw_k!r}")
        if not 1 <= k <= max_k:
            return error(400, f"k must be between 1 and {max_k}, got {k}")
        raw_radius = request.values.get("radius", "").strip()
        radius = None
        if raw_radius:
            if not re.fullmatch(r"[0-9]{1,4}", raw_radius):
                return error(400, f"radius must be a whole number >= 0, got {raw_radius!r}")
            radius = int(raw_radius)
        got, err = read_image()
        if err:
            return err
        if service.size() == 0:
            return error(409, "the index is empty: add images first")
        start = time.perf_counter()
        out = service.search(got[1], k) if radius is None else service.search_radius(got[1], radius, k)
        counts.add("search")
        out["milliseconds"] = round(1000 * (time.perf_counter() - start), 2)
        return jsonify(out)

    @app.get("/image/<index>")
    def image(index):
        path, why = service.image_path(index)
        if path is None:
            return error(404, why)
        try:
            jpeg = thumbs.get(path, lambda: thumbnail_jpeg(path, THUMB_SIZE))
        except ImageError as exc:
            return error(404, f"database image {index} ({path}): {exc}")
        resp = app.response_class(jpeg, mimetype="image/jpeg")
        resp.headers["Cache-Control"] = "public, max-age=3600"
        return resp

    return app


def build_service(args, log=print):
    """Load the model and the database codes (from the cache, or encoded now), or open the index. What a
    failed start opened is closed again."""
    if args.index:
        from utils.deploy.indexing import open_index_search

        searcher = open_index_search(args.index, args.pretrained, args.model_dir,
                                     args.backend if args.model_dir else None, args.use_gpu,
                                     data_path=args.data_path)
        try:
            log(f"----- Index {args.index}: {len(searcher)} items, {searcher.model.bit}-bit codes of "
                f"{searcher.model.source}")
            service = IndexService(searcher, args.backend if args.model_dir else "index")
            if len(searcher):
                service.warm_up()
        except BaseException:
            searcher.index.close()
            raise
        return service
    from utils.deploy.searcher import open_search

    searcher = open_search(args.pretrained, args.model_dir, args.backend, args.use_gpu, None, args.save_path,
                           args.dataset, args.data_path, args.list_dir, args.batch_size, args.skip_bad_images, log=log)
    service = Service(searcher, args.backend if args.model_dir else "dygraph")
    service.warm_up()
    return service


def check_port(host, port):
    """Fail before loading anything when the address cannot be bound."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(infos[0][4])
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port} ({exc}); choose another --port or --host")


def graceful_stop():
    """SIGTERM / SIGINT: the first one asks the server to stop (no new connections, the requests in flight
    finish), a second one stops at once. Installed after the model is loaded: Paddle sets its own C++
    handlers when it is imported (they print a "FatalError: Termination signal" trace and exit 143)."""
    return StopSignal()


def _busy_channels(server):
    """waitress channels reading a request, holding queued requests, or with output still to send."""
    from waitress.channel import HTTPChannel

    return [c for c in list(server._map.values()) if isinstance(c, HTTPChannel)
            and (c.requests or getattr(c, "request", None) is not None or c.total_outbufs_len)]


def serve(app, host, port, threads, max_body, stop=None, drain_seconds=30.0):
    """waitress when installed (fixed thread pool, bodies over `max_body` refused before they reach the
    app), else Flask/werkzeug's threaded server. With `stop` (graceful_stop()), a signal ends the loop after
    the listening socket is closed and the requests in flight are answered (at most `drain_seconds`).
    → the name of the signal that stopped it, or None."""
    try:
        import waitress
    except ImportError:
        waitress = None
    try:
        if waitress:
            server = waitress.create_server(app, host=host, port=port, threads=threads,
                                            max_request_body_size=max_body, ident="hashing-retrieval")
        else:
            from werkzeug.serving import make_server

            server = make_server(host, port, app, threaded=True)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port} ({exc}); choose another --port or --host")
    workers = f"waitress, {threads} threads" if waitress else "werkzeug, a thread per request"
    print(f"----- Serving on http://{host}:{port}/ ({workers}); Ctrl-C or SIGTERM stops", flush=True)
    stop = stop or graceful_stop()
    try:
        if not waitress:
            server.timeout = 0.5
            while not stop.signal_name:
                server.handle_request()  # one connection at a time is accepted; threads answer them
            return stop.signal_name
        deadline = None
        while True:
            server.asyncore.loop(timeout=0.2, map=server._map, use_poll=server.adj.asyncore_use_poll, count=1)
            if not stop.signal_name:
                continue
            if deadline is None:  # stop accepting; keep serving the connections we have
                deadline = time.monotonic() + drain_seconds
                server.accepting = False
                server.del_channel()
                server.socket.close()
            if not _busy_channels(server) or time.monotonic() > deadline:
                return stop.signal_name
    finally:
        if waitress:
            server.task_dispatcher.shutdown()
        else:
            server.server_close()


def main(argv=None):
    args = parse_args(argv)
    check_port(args.host, args.port)
    service = build_service(args)
    try:
        app = create_app(service, args.max_upload_mb, args.max_k, args.max_pixels, admin_token=args.admin_token)
        stop = graceful_stop().install()
        # the app answers 413 (JSON) up to this size; waitress refuses anything more than 1 MB beyond it
        how = serve(app, args.host, args.port, args.threads, int(args.max_upload_mb * 1024 * 1024) + (1 << 20), stop)
    finally:
        service.close()
    print(f"----- stopped by {how}: requests in flight answered, {'index' if args.index else 'database'} closed",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli_entry(main)())
