"""Find the database images closest to a query image by Hamming distance.

    python predict.py [--bit 64] --img query.jpg [--data_path datasets/coco] [--dataset coco] [--list-dir data/coco]
                      [--pretrained output/best.pdparams | --model-dir output/inference] [--save_path ./output]
                      [--topk 10] [--show]
    python predict.py --index output/index --img query.jpg [--topk 10] [--show]   # an index (scripts/index.py)

Database codes are cached in <save_path>/database_code_<bit>.npy (training writes it too); the cache
is reused only while the weights, the database list, the image root and the preprocessing are the
same, and rebuilt otherwise.
"""
import argparse
import os
import shutil
import sys

from utils.errors import UserError, cli_entry


def parse_args(argv=None):
    from utils.cli import add_flag
    from utils.deploy.options import add_search_model

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--img", required=True, help="query image")
    p.add_argument("--bit", type=int, default=None,
                   help="code length; taken from the checkpoint or export, checked when given")
    p.add_argument("--pretrained", default=None,
                   help="checkpoint (default: the <bit>-bit best.pdparams in --save_path or its sub-folders)")
    add_flag(p, "--model-dir", default=None,
                   help="use an exported model (export_model.py) instead of a checkpoint")
    add_search_model(p)
    p.add_argument("--index", default=None,
                   help="search this index (scripts/index.py) instead of the database list; its own model by "
                        "default (--pretrained / --model-dir must be the same model)")
    add_flag(p, "--save_path", "--save-path", dest="save_path", default="./output",
                   help="where the database code cache and the matched pictures go (default %(default)s)")
    p.add_argument("--topk", type=int, default=10, help="results to list (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size when encoding the database")
    p.add_argument("--skip-bad-images", action="store_true", help="skip unreadable database images")
    p.add_argument("--use-gpu", action="store_true")
    p.add_argument("--show", action="store_true", help="save a montage PNG of the query and its top-k")
    return p.parse_args(argv)


def query_labels(query_path, database, list_dir):
    """Labels of the query when it appears in the database/test/train list (by real path), else None."""
    from utils.data.lists import read_list

    target = os.path.realpath(query_path)
    for name in ("test", "database", "train"):
        lst = database.list if name == "database" else None
        if lst is None:
            f = os.path.join(list_dir, f"{name}.txt")
            if not os.path.isfile(f):
                continue
            try:
                lst = read_list(f)
            except UserError:
                continue
        for i, p in enumerate(lst.paths):
            if os.path.realpath(os.path.join(database.data_path, p)) == target:
                return [int(c) for c in lst.labels[i].nonzero()[0]]
    return None


def main(argv=None):
    args = parse_args(argv)
    from utils.deploy.searcher import open_search
    from utils.data.images import ImageError, open_image
    from utils.fileio import atomic_path
    from utils.rundir import RunDir

    if args.topk <= 0:
        raise UserError(f"--topk must be positive, got {args.topk}")
    if args.pretrained and args.model_dir:
        raise UserError("give either --pretrained CKPT or --model-dir DIR, not both")
    try:
        query = open_image(args.img)
    except ImageError as exc:
        raise UserError(f"--img {args.img}: {exc}")
    if args.index:
        from utils.deploy.indexing import open_index_search

        searcher = open_index_search(args.index, args.pretrained, args.model_dir,
                                     args.runtime if args.model_dir else None, args.use_gpu,
                                     data_path=args.data_path)  # the index's image root, if its images moved
        try:
            if args.bit is not None and searcher.model.bit != args.bit:
                raise UserError(f"--bit {args.bit} but the index holds {searcher.model.bit}-bit codes")
            print(f"----- Index {args.index}: {len(searcher)} items; model {searcher.model.source}")
            database = None
            _, hits = searcher.search(query, min(args.topk, max(len(searcher), 1)))
        finally:
            searcher.index.close()
    else:
        searcher = open_search(args.pretrained, args.model_dir, args.runtime, args.use_gpu, args.bit, args.save_path,
                               args.dataset, args.data_path, args.list_dir, args.batch_size, args.skip_bad_images,
                               model_line="----- Pretrained: Load model state from {source}")
        database = searcher.database
        _, hits = searcher.search(query, min(args.topk, len(database.codes)))
    best = hits[0]
    print(f"----- Predicted Hamm_min: {best.distance}")
    print(f"----- Found Matched Pic: {best.path}")
    out_dir = RunDir(args.save_path).file(RunDir.PREDICT)
    os.makedirs(out_dir, exist_ok=True)
    saved = os.path.join(out_dir, os.path.basename(best.path))
    with atomic_path(saved) as tmp:
        shutil.copyfile(best.path, tmp)
    print(f"----- Save Matched Pic in: {saved}")
    print(f"{'rank':>4}  {'hamming':>7}  {'path':<60}  labels" + ("  (id)" if args.index else ""))
    for hit in hits:
        print(f"{hit.rank:>4}  {hit.distance:>7}  {hit.path:<60}  {' '.join(map(str, hit.labels))}"
              + (f"  ({hit.id})" if args.index else ""))
    if args.show:
        from utils.report.plots import save_montage

        q_labels = query_labels(args.img, database, os.path.dirname(database.list.list_file)) if database else None
        stem = os.path.splitext(os.path.basename(args.img))[0]
        png = save_montage(os.path.join(out_dir, f"{stem}_top{len(hits)}.png"), args.img, q_labels, hits)
        print(f"----- Save montage in: {png}")


if __name__ == "__main__":
    sys.exit(cli_entry(main)())
