"""A living index of hash codes: build it once, add and remove images, search it.

    python scripts/index.py build   --model M (--list L --data-path DIR | --images DIR) --out IDX
                                    [--backend embedded|milvus] [--uri URI] [--chunk-size 256]
    python scripts/index.py add     --index IDX (--list L --data-path DIR | --images DIR) [--rebuild --model M]
    python scripts/index.py remove  --index IDX (--ids 3,7 | --paths P ... | --list L) [--skip-missing]
    python scripts/index.py compact --index IDX
    python scripts/index.py relocate --index IDX --root NEW        # the images moved to NEW
    python scripts/index.py info    --index IDX [--json]
    python scripts/index.py search  --index IDX --img FILE [-k 10] [--json]
    python scripts/index.py search  --index IDX --img FILE --radius 2 [--max-results 1000] [--verbose]

M is a checkpoint (best.pdparams), a training output folder, or an exported model directory
(export_model.py; --runtime paddle|onnx|onnx-int8, the runtimes of utils/deploy/runtimes.py). Words:
--backend is where the index stores its codes (embedded segment files or Milvus), --runtime what runs the
model, --engine the search kernel of the embedded backend. The index records its backend (and URI) and its model, so the
later commands need only --index. Paths are stored relative to the index's image root (the --data-path
or --images of the build): --paths takes any spelling of the same file (as the list writes it, relative
to the current directory, absolute, through a symlink). When the images moved, `relocate --root NEW`
records it, or `--data-path NEW` uses it for one command. Several commands and the service may write
the same index at once: the writes take turns. A build stopped by Ctrl-C, SIGTERM or a kill keeps
every committed chunk; the same command continues it. See README "Index".
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.errors import UserError, cli_entry  # noqa: E402


def parse_args(argv=None):
    from utils.cli import add_flag
    from utils.deploy.options import add_engine, add_index_backend, add_runtime

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def sources(q):
        q.add_argument("--list", help="a HashNet list: relative/path l1 ... lC")
        add_flag(q, "--data-path", help="image root of --list")
        q.add_argument("--images", help="a folder: every image file under it (no labels)")
        q.add_argument("--chunk-size", type=int, default=256, help="images per commit (default %(default)s)")
        q.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default %(default)s)")
        q.add_argument("--skip-bad-images", action="store_true", help="skip and count unreadable images")

    def model(q, required=False):
        q.add_argument("--model", required=required,
                       help="checkpoint, training output folder or exported model directory" +
                       ("" if required else " (default: the index's own)"))
        add_runtime(q, None, "runtime of an exported --model (default paddle, or the index's)",
                    old_spelling=False)  # here --backend is the index's storage
        q.add_argument("--use-gpu", action="store_true")

    q = sub.add_parser("build", help="encode a list or a folder into a new index (resumes an interrupted build)")
    q.add_argument("--out", required=True, help="index directory to create")
    add_index_backend(q)
    q.add_argument("--uri", help="Milvus: a server (http://host:19530) or a Milvus Lite file "
                                 "(default: milvus.db in the index directory)")
    model(q, required=True)
    sources(q)
    q = sub.add_parser("add", help="encode and add the images the index does not hold yet")
    q.add_argument("--index", required=True)
    model(q)
    q.add_argument("--rebuild", action="store_true", help="--model differs from the index's: re-encode the index")
    sources(q)
    def moved(q):
        add_flag(q, "--data-path",
                 help="the index's image root, if its images moved (see relocate)")

    q = sub.add_parser("remove", help="remove items by id or path")
    q.add_argument("--index", required=True)
    q.add_argument("--ids", help="comma-separated ids, e.g. 3,7")
    q.add_argument("--paths", nargs="+", help="image files: as the list writes them, relative to the current "
                                              "directory or absolute")
    q.add_argument("--list", help="remove the images of this HashNet list (paths relative to the image root)")
    q.add_argument("--skip-missing", action="store_true", help="count unknown ids/paths instead of failing")
    moved(q)
    q = sub.add_parser("compact", help="merge segments, drop removed items")
    q.add_argument("--index", required=True)
    q = sub.add_parser("relocate", help="the images moved: record their new image root")
    q.add_argument("--index", required=True)
    q.add_argument("--root", required=True, help="the folder that now holds the images (the new --data-path)")
    q = sub.add_parser("info", help="size, model, bits, backend, disk and memory use")
    q.add_argument("--index", required=True)
    q.add_argument("--json", action="store_true")
    moved(q)
    q = sub.add_parser("search", help="the closest items to a query image")
    q.add_argument("--index", required=True)
    q.add_argument("--img", required=True)
    q.add_argument("-k", "--topk", dest="k", type=int, default=10)
    q.add_argument("--radius", type=int, default=None,
                   help="instead of the top k: every item within this Hamming distance, by (distance, id) "
                        "(exact: a scan or multi-index hashing, chosen per query; Milvus: its range search)")
    add_flag(q, "--max-results", type=int, default=1000,
                   help="with --radius: at most this many results (default %(default)s); a note says when it cut")
    q.add_argument("--verbose", action="store_true", help="with --radius: say which algorithm answered")
    add_engine(q, "embedded backend: exact engine of utils.retrieval (default auto)")
    q.add_argument("--json", action="store_true")
    model(q)
    moved(q)
    args = p.parse_args(argv)
    if getattr(args, "radius", None) is not None and args.radius < 0:
        raise UserError(f"--radius must be >= 0, got {args.radius}")
    for name in ("chunk_size", "batch_size", "k", "max_results"):
        if getattr(args, name, 1) <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    return args


def do_sync(args, index, model):
    from utils.deploy.indexing import stop_request, scan_sources, sync

    srcs, _ = scan_sources(args.list, args.data_path, args.images)
    with stop_request() as stop:
        stats = sync(index, model, srcs, args.chunk_size, args.batch_size, args.skip_bad_images, stop)
    total = len(index)
    if stats.stopped_by:
        print(f"----- stopped by {stats.stopped_by}: {stats.line()}; {stats.remaining} images left, "
              f"{total} in the index; run the same command again to continue", flush=True)
        return 130 if stats.stopped_by == "SIGINT" else 0
    print(f"----- {stats.line()}; {total} items in {index.dir.path}", flush=True)
    return 0


def build(args):
    from utils.deploy.indexing import create_index, index_model, resolve_model, scan_sources
    from utils.index import Index, is_index

    _, source = scan_sources(args.list, args.data_path, args.images)  # check the flags before loading a model
    if is_index(args.out):
        index = Index(args.out, "--out")
        if index.source != source:
            raise UserError(f"--out {args.out} holds an index built from {index.source}; "
                            f"to add these images use: scripts/index.py add --index {args.out} ...")
        if index.backend != args.backend:
            raise UserError(f"--out {args.out} is a {index.backend} index; --backend {args.backend} differs")
        model, _ = index_model(index, args.model, args.runtime, args.use_gpu)
        print(f"----- resuming the build of {args.out} ({len(index)} items committed)", flush=True)
    else:
        if os.path.exists(args.out):
            raise UserError(f"--out {args.out} exists and is not an index; choose a new directory")
        model, record = resolve_model(args.model, args.runtime or "paddle", args.use_gpu)
        index = create_index(model, record, args.out, args.backend, args.uri, source)
        print(f"----- new {args.backend} index {args.out}: {model.bit}-bit codes of {model.source}", flush=True)
    try:
        return do_sync(args, index, model)
    finally:
        index.close()


def add(args):
    from utils.deploy.indexing import index_model, rebuild
    from utils.index import Index

    index = Index(args.index)
    if args.data_path and index.root_missing():  # the images moved: --data-path is the root now
        index.close()
        index = Index(args.index, data_path=args.data_path)
        print(f"----- the index's image root {index.recorded_root} is gone: using --data-path "
              f"{args.data_path} (scripts/index.py relocate records it)", flush=True)
    try:
        model, record = index_model(index, args.model, args.runtime, args.use_gpu, rebuild=args.rebuild)
        if args.rebuild:
            n = rebuild(index, model, record, args.batch_size)
            print(f"----- re-encoded {n} items with {model.source}", flush=True)
        if args.list or args.images:
            return do_sync(args, index, model)
        return 0
    finally:
        index.close()


def remove(args):
    from utils.index import Index

    if not args.ids and not args.paths and not args.list:
        raise UserError("remove: give --ids 3,7, --paths P ... or --list L")
    try:
        ids = [int(t) for t in args.ids.split(",") if t.strip()] if args.ids else []
    except ValueError:
        raise UserError(f"--ids {args.ids}: expected comma-separated whole numbers, e.g. --ids 3,7")
    paths = list(args.paths or ())
    with Index(args.index, data_path=args.data_path) as index:
        if args.list:
            from utils.data.lists import read_list

            # the list's paths are relative to the image root: spell them as the index stores them
            paths += [index.file(p) if not os.path.isabs(p) else p
                      for p in read_list(args.list, allow_absolute=True).paths]
        removed, missing = index.remove(ids, paths, missing_ok=args.skip_missing)
        skipped = f", skipped {len(missing)} not in the index ({', '.join(missing[:5])})" if missing else ""
        print(f"----- removed {len(removed)}{skipped}; {len(index)} items left", flush=True)
    return 0


def relocate(args):
    from utils.index import Index

    with Index(args.index) as index:
        old = index.root
        sampled, found = index.relocate(args.root)
        print(f"----- image root of {args.index}: {old} -> {index.root} ({found} of {sampled} sampled images "
              "found there)", flush=True)
    return 0


def compact(args):
    from utils.index import Index

    with Index(args.index) as index:
        kept, dropped = index.compact()
        print(f"----- compacted {args.index}: {kept} items kept, {dropped} removed items dropped", flush=True)
    return 0


def info(args):
    from utils.index import Index

    with Index(args.index, data_path=args.data_path) as index:
        out = index.info()
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    mem = out.get("memory_bytes")
    model = out.get("model") or {}
    lines = [("items", f"{out['count']} ({out['tombstones']} removed, kept until compact)"),
             ("bits", out["bit"]), ("backend", out["backend"] + (f" {out['uri']} ({out['collection']})"
                                                               if out.get("uri") else "")),
             ("model", model.get("model_dir") or model.get("pretrained")),
             ("source", out.get("source")), ("root", out.get("root")), ("segments", out.get("segments", "-")),
             ("disk", f"{out['disk_bytes'] / 2**20:.2f} MB"),
             ("memory", f"{mem / 2**20:.2f} MB of codes and ids when searching" if mem is not None
              else "held by the Milvus server")]
    for key, value in lines:
        print(f"{key:>9}: {value}")
    return 0


def search(args):
    from utils.data.images import ImageError, open_image
    from utils.deploy.indexing import open_index_search

    try:
        image = open_image(args.img)
    except ImageError as exc:
        raise UserError(f"--img {args.img}: {exc}")
    searcher = open_index_search(args.index, args.model, None, args.runtime, args.use_gpu, args.engine,
                                 data_path=args.data_path)
    found = None
    try:
        if args.radius is not None:
            _, hits, found = searcher.search_radius(image, args.radius, args.max_results)
        else:
            _, hits = searcher.search(image, min(args.k, max(len(searcher), 1)))
    finally:
        searcher.index.close()
    if found is not None:
        return print_radius(args, hits, found)
    if args.json:
        print(json.dumps({"results": [{"id": h.id, "path": h.stored, "file": h.path, "distance": h.distance}
                                      for h in hits]}))
    else:
        print(f"{'rank':>4}  {'id':>8}  {'hamming':>7}  path")
        for h in hits:
            print(f"{h.rank:>4}  {h.id:>8}  {h.distance:>7}  {h.stored}")
    return 0


def print_radius(args, hits, found):
    total = "an unknown number of" if found.total is None else str(found.total)
    note = (f"note: {total} items are within distance {args.radius}; showing the first {len(hits)} by (distance, "
            "id) (--max-results)") if found.capped else None
    if args.json:
        print(json.dumps({"radius": args.radius, "total": found.total, "capped": bool(found.capped),
                          "algorithm": found.algorithm,
                          "results": [{"id": h.id, "path": h.stored, "file": h.path, "distance": h.distance}
                                      for h in hits]}))
    else:
        print(f"{len(hits)} items within Hamming distance {args.radius}" +
              (f" (algorithm: {found.algorithm})" if args.verbose else ""))
        print(f"{'rank':>4}  {'id':>8}  {'hamming':>7}  path")
        for h in hits:
            print(f"{h.rank:>4}  {h.id:>8}  {h.distance:>7}  {h.stored}")
    if note:
        print(note, file=sys.stderr)
    return 0


def main(argv=None):
    args = parse_args(argv)
    return {"build": build, "add": add, "remove": remove, "compact": compact, "relocate": relocate, "info": info,
            "search": search}[args.command](args)


if __name__ == "__main__":
    sys.exit(cli_entry(main)())
