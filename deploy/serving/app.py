"""Retrieval service: query the database by image over HTTP, and a web page to try it in a browser.

    python deploy/serving/app.py --model-dir output/inference --data_path datasets/coco --list-dir data/coco
                                 [--pretrained CKPT instead of --model-dir] [--backend paddle|onnx]
                                 [--save_path ./output] [--host 127.0.0.1] [--port 8866] [--max-upload-mb 10]

At start the model and the database codes are loaded once; the codes come from the same cache as
predict.py (`<save_path>/database_code_<bit>.npy`, rebuilt when the weights, the list, the image root
or the preprocessing changed). Then:

    GET  /               the web page (upload or drop an image, see its top-k)
    POST /search         multipart field `image`, `k` (form or query, default 10, at most --max-k)
                         -> {"code": hex, "bits": N, "results": [{rank, distance, index, path, labels}]}
    GET  /health         status, model, bits, database size
    GET  /image/<index>  JPEG thumbnail of the database image at list position <index>

Errors are JSON `{"error": "..."}`: 400 (not an image, bad k), 404 (no such route or index), 413
(upload larger than --max-upload-mb). Served by waitress (a fixed pool of --threads worker threads,
request bodies bounded and spooled to disk) when installed, else by Flask's threaded server.
"""
import argparse
import collections
import io
import os
import re
import socket
import sys
import threading
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from utils.errors import UserError, cli_entry  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
THUMB_SIZE = 256
THUMB_CACHE = 512  # thumbnails kept in memory (about 10-20 KB each)


def parse_args(argv=None):
    from utils.deploy.searcher import add_database_args

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model-dir", "--model_dir", dest="model_dir", help="a model exported by export_model.py")
    src.add_argument("--pretrained", help="a training checkpoint (best.pdparams), run in Paddle's dynamic graph")
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
    for name in ("max_upload_mb", "max_k", "max_pixels", "threads"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    return args


# ------------------------------------------------------------------------------------------ images
class BadImage(Exception):
    """An upload that is not a decodable image (or too large a one)."""


def decode_upload(data, max_pixels):
    """Bytes → PIL RGB image, fully decoded; the size is checked from the header before decoding."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise BadImage("the uploaded file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise BadImage(f"image is {w}x{h} = {w * h} pixels, more than the {max_pixels} accepted")
                img.load()
                return img.convert("RGB")
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImage(f"image rejected: its header declares more pixels than the {max_pixels} accepted "
                       "(decompression bomb guard)")
    except UnidentifiedImageError:
        raise BadImage("the uploaded file is not an image PIL can read (JPEG, PNG, BMP, GIF, WebP, TIFF ...)")
    except (OSError, ValueError, SyntaxError) as exc:
        raise BadImage(f"the uploaded image could not be decoded ({type(exc).__name__}: {exc})")


def thumbnail_jpeg(path, size=THUMB_SIZE):
    """A JPEG (bytes) of the image at `path`, at most `size` pixels on its longer side."""
    from PIL import Image

    with Image.open(path) as img:
        img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when possible
        img = img.convert("RGB")
        img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


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
            code, found = self.searcher.search(image, k)
        paths = self.database.list.paths
        results = [{"rank": hit.rank, "distance": hit.distance, "index": hit.index, "path": paths[hit.index],
                    "labels": hit.labels} for hit in found]
        return {"code": self._hex(code.reshape(1, -1))[0], "bits": int(self.model.bit), "results": results}


def create_app(service, max_upload_mb=10.0, max_k=100, max_pixels=40_000_000, default_k=10):
    """The Flask app over a Service."""
    from flask import Flask, jsonify, request, send_from_directory
    from PIL import Image
    from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

    # PIL's own guard (a warning above MAX_IMAGE_PIXELS, an error above twice that) must not be
    # stricter than ours; decode_upload turns its warning into a 400
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, max_pixels)
    app = Flask(__name__, static_folder=os.path.join(HERE, "static"), static_url_path="/static")
    max_bytes = int(max_upload_mb * 1024 * 1024)
    app.config["MAX_CONTENT_LENGTH"] = max_bytes
    app.json.sort_keys = False
    thumbs = LRUBytes(THUMB_CACHE)
    db = service.database
    n_codes = len(db.codes)

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

    @app.errorhandler(Exception)
    def internal_error(exc):
        app.logger.exception("unhandled error")
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
                        "bits": int(service.model.bit), "database_size": n_codes, "list_size": len(db.list),
                        "max_k": max_k, "max_upload_mb": max_upload_mb})

    @app.post("/search")
    def search():
        raw_k = request.values.get("k", "").strip() or str(default_k)
        try:
            k = int(raw_k)
        except ValueError:
            return error(400, f"k must be a whole number, got {raw_k!r}")
        if not 1 <= k <= max_k:
            return error(400, f"k must be between 1 and {max_k}, got {k}")
        upload = request.files.get("image")
        if upload is None:
            return error(400, "no image: send the query as multipart/form-data field 'image'")
        data = upload.read(max_bytes + 1)
        if len(data) > max_bytes:
            return too_large(None)
        try:
            image = decode_upload(data, max_pixels)
        except BadImage as exc:
            return error(400, f"{upload.filename or 'upload'}: {exc}")
        start = time.perf_counter()
        out = service.search(image, min(k, n_codes))
        out["milliseconds"] = round(1000 * (time.perf_counter() - start), 2)
        return jsonify(out)

    @app.get("/image/<index>")
    def image(index):
        pos = int(index) if re.fullmatch(r"[0-9]{1,12}", index) else -1
        if not 0 <= pos < len(db.list):
            return error(404, f"no database image {index!r}: the index is a list position, 0 to {len(db.list) - 1}")
        try:
            jpeg = thumbs.get(pos, lambda: thumbnail_jpeg(db.path(pos)))
        except (OSError, ValueError, SyntaxError) as exc:
            return error(404, f"database image {pos} ({db.list.paths[pos]}) cannot be read ({type(exc).__name__})")
        resp = app.response_class(jpeg, mimetype="image/jpeg")
        resp.headers["Cache-Control"] = "public, max-age=3600"
        return resp

    return app


def build_service(args, log=print):
    """Load the model and the database codes (from the cache, or encoded now)."""
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


def serve(app, host, port, threads, max_body):
    """waitress when installed (fixed thread pool, bodies over `max_body` refused before they reach the
    app), else Flask/werkzeug's threaded server."""
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
    print(f"----- Serving on http://{host}:{port}/ ({workers}); Ctrl-C stops", flush=True)
    try:
        server.run() if waitress else server.serve_forever()
    finally:
        server.close() if waitress else server.server_close()


def main(argv=None):
    args = parse_args(argv)
    check_port(args.host, args.port)
    service = build_service(args)
    app = create_app(service, args.max_upload_mb, args.max_k, args.max_pixels)
    # the app answers 413 (JSON) up to this size; waitress refuses anything more than 1 MB beyond it
    serve(app, args.host, args.port, args.threads, int(args.max_upload_mb * 1024 * 1024) + (1 << 20))


if __name__ == "__main__":
    sys.exit(cli_entry(main)())
