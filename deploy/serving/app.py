"""Retrieval service: query the database by image over HTTP, and a web page to try it in a browser.

    python deploy/serving/app.py --model-dir output/inference --data_path datasets/coco --list-dir data/coco
                                 [--pretrained CKPT instead of --model-dir] [--runtime paddle|onnx|onnx-int8]
                                 [--save_path ./output] [--host 127.0.0.1] [--port 8866] [--max-upload-mb 10]
    python deploy/serving/app.py --index output/index [--admin-token T]   # an index (scripts/index.py)

At start the model and the database codes are loaded once; the codes come from the same cache as
predict.py (`<save_path>/database_code_<bit>.npy`, rebuilt when the weights, the list, the image root
or the preprocessing changed). Then:

    GET  /               the web page (upload or drop an image, see its top-k)
    POST /search         multipart field `image`, `k` (form or query, default 10, at most --max-k)
                         -> {"code": hex, "bits": N, "results": [{rank, distance, id, path, labels}]}
    GET  /health         status, model, runtime, bits, database size
    GET  /stats          database size, requests served, uptime (with --index: the index's info too)
    GET  /image/<id>     JPEG thumbnail of the database image <id> (a list position; --index: an item id)
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
logged with its traceback.

This file is the HTTP layer (Flask routes, status codes) and the CLI; the service's logic (the searchers,
the thumbnail cache, the decoding and checking of requests) is utils/deploy/service.py, and the server
(cheroot: a fixed pool of --threads worker threads, bodies over the limit refused before the app, a
graceful stop through its public `stop()`; why cheroot and not waitress: utils/deploy/server.py) is
utils/deploy/server.py. Changed in this release: results carry `id` only (the duplicate `index` field is
gone), /health names the model's runtime `runtime` (was `backend`), and the flag is --runtime (--backend
still accepted).
"""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from utils.errors import UserError, cli_entry  # noqa: E402
from utils.data.images import ImageError  # noqa: E402
from utils.deploy.server import check_port, graceful_stop, serve  # noqa: E402, F401 - re-exported
from utils.deploy.service import (ADMIN_ENV, BadRequest, Counts, IndexService, LRUBytes, Service,  # noqa: E402, F401
                                  Thumbnails, build_service, check_admin, decode_upload, parse_item, parse_k,
                                  parse_labels, parse_radius, radius_fields, too_large_message)

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None):
    from utils.cli import add_flag
    from utils.deploy.options import add_engine, add_search_model

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    add_flag(src, "--model-dir", help="a model exported by export_model.py")
    src.add_argument("--pretrained", help="a training checkpoint (best.pdparams), run in Paddle's dynamic graph")
    p.add_argument("--index", help="search this index (scripts/index.py) instead of a database list; its model "
                                   "by default (--model-dir / --pretrained must be the same model)")
    add_engine(p, "with --index on the embedded backend: the exact search kernel (default auto)")
    p.add_argument("--admin-token", default=os.environ.get(ADMIN_ENV) or None,
                   help=f"enables POST /index/add and DELETE /index/<id> for this token (default ${ADMIN_ENV})")
    add_search_model(p)
    add_flag(p, "--save_path", "--save-path", dest="save_path", default="./output",
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


def create_app(service, max_upload_mb=10.0, max_k=100, max_pixels=40_000_000, default_k=10, admin_token=None):
    """The Flask app over a Service or an IndexService (utils.deploy.service)."""
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
    thumbs = Thumbnails()
    started, counts = time.time(), Counts()

    def error(status, message):
        resp = jsonify({"error": message})
        resp.status_code = status
        return resp

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc):
        return error(413, too_large_message(max_upload_mb))

    @app.errorhandler(BadRequest)
    def bad_request(exc):  # what the request sent (utils.deploy.service's checks)
        return error(exc.status, str(exc))

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
        return jsonify({"status": "ok", "model": service.model.source, "runtime": service.runtime,
                        "bits": int(service.model.bit), **service.health(),
                        "max_k": max_k, "max_upload_mb": max_upload_mb})

    @app.get("/stats")
    def stats():
        return jsonify({**service.stats(), "requests": counts.as_dict(),
                        "uptime_seconds": round(time.time() - started, 1), "admin": bool(admin_token)})

    def admin():
        check_admin(admin_token, request.headers.get("Authorization"), request.headers.get("X-Admin-Token"),
                    service.has_index)

    def read_image():
        """(bytes, PIL image) of the multipart field `image` under the upload limits (BadRequest if not)."""
        upload = request.files.get("image")
        if upload is None:
            raise BadRequest("no image: send the query as multipart/form-data field 'image'")
        data = upload.read(max_bytes + 1)
        return data, decode_upload(data, upload.filename, max_bytes, max_upload_mb, max_pixels)

    @app.post("/index/add")
    def index_add():
        admin()
        labels = parse_labels(request.values.get("labels"))
        data, image = read_image()
        item_id, path, added = service.add(data, image, labels)
        counts.add("add")
        return jsonify({"id": item_id, "path": path, "added": added, "database_size": service.size()})

    @app.delete("/index/<item>")
    def index_delete(item):
        admin()
        item_id = parse_item(item, 18)
        if item_id is None or not service.delete(item_id):
            return error(404, f"no item {item!r} in the index")
        counts.add("delete")
        return jsonify({"removed": item_id, "database_size": service.size()})

    @app.post("/search")
    def search():
        k = parse_k(request.values.get("k"), default_k, max_k)
        radius = parse_radius(request.values.get("radius"))
        _, image = read_image()
        if service.size() == 0:
            return error(409, "the index is empty: add images first")
        start = time.perf_counter()
        out = service.search(image, k) if radius is None else service.search_radius(image, radius, k)
        counts.add("search")
        out["milliseconds"] = round(1000 * (time.perf_counter() - start), 2)
        return jsonify(out)

    @app.get("/image/<item>")
    def image(item):
        path, why = service.image_path(item)
        if path is None:
            return error(404, why)
        try:
            jpeg = thumbs.jpeg(path)
        except ImageError as exc:
            return error(404, f"database image {item} ({path}): {exc}")
        resp = app.response_class(jpeg, mimetype="image/jpeg")
        resp.headers["Cache-Control"] = "public, max-age=3600"
        return resp

    return app


def main(argv=None):
    args = parse_args(argv)
    check_port(args.host, args.port)
    service = build_service(args)
    try:
        app = create_app(service, args.max_upload_mb, args.max_k, args.max_pixels, admin_token=args.admin_token)
        stop = graceful_stop().install()
        # the app answers 413 (JSON) up to this size; the server refuses anything more than 1 MB beyond it
        how = serve(app, args.host, args.port, args.threads, int(args.max_upload_mb * 1024 * 1024) + (1 << 20), stop)
    finally:
        service.close()
    print(f"----- stopped by {how}: requests in flight answered, {'index' if args.index else 'database'} closed",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli_entry(main)())
