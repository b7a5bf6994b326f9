"""Build hashing lists for your own images, from a class-folder tree or a CSV, ready for `--dataset custom`.

    python scripts/build_lists.py --images path/to/photos --out data/mydata
    python scripts/build_lists.py --csv path/to/labels.csv --out data/mydata     # rows like  a/001.jpg,cat|dog
    python main_single_gpu.py --dataset custom --data-path path/to/photos --list-dir data/mydata ...

Input (exactly one of):
  --images DIR  class-folder layout `DIR/<class>/.../<image>`: every folder directly in DIR is a class and
                every image at any depth below it is one single-label (one-hot) item. Classes are sorted by
                name; that order is the label columns. An image is a file with one of the extensions
                .jpg .jpeg .jpe .jfif .png .bmp .dib .gif .tif .tiff .webp .ppm .pgm .pbm .pnm (any case).
                Other files are ignored and counted, so are files directly in DIR (not in a class) and
                hidden entries (names starting with '.', e.g. macOS '._x.jpg' files); the --out folder is
                skipped if it lies inside DIR. Paths are written relative to DIR: DIR is the --data-path
                of training.
  --csv FILE    a UTF-8 table with a header line: a path column (--path-column, default 'path') and a label
                column (--label-column, default 'labels') holding tags separated by --label-separator
                (default '|'), fields separated by --delimiter (default ','; 'tab' or '\\t' for a TSV).
                Multi-label (multi-hot); the classes are the sorted set of tags. Paths are relative to
                --root (default: the CSV's folder), which is the --data-path of training; absolute paths
                inside --root are made relative. Each row needs at least one tag (an empty label cell is an
                error naming FILE:LINE) and each path may appear once (a second occurrence is an error
                naming both lines). Lines in the lists are the CSV's rows sorted by path.

Split, per class and seeded (--seed, default 0), as in the standard protocols (COCO, NUS-WIDE, CIFAR-10):
  queries   (test.txt)      --query-per-class N, or --query-fraction F of each class (default 0.1)
  database  (database.txt)  every image that is not a query
  training  (train.txt)     --train-per-class N, or --train-fraction F of each class's non-queries (default
                            0.5), drawn from the database (train ⊆ database, like COCO and DeepHash-pytorch's
                            cifar10-1); with --database-excludes-train the training images are left out of the
                            database instead (DeepHash-pytorch's cifar10 protocol).
  Fractions round to the nearest whole image and give every class at least one query and one training
  image. With the defaults a class of 200 images gets 20 queries, a database of 180 and 90 training images
  (--database-excludes-train: 20 queries, 90 training, 90 database). A class with fewer images than the split
  needs is an error naming the class, its count and the minimum; --drop-small-classes leaves such classes out
  (in a CSV the tag is removed from its rows and rows left without any tag are left out) and lists them.

Multi-label stratification (greedy per-label quotas): every class j gets a quota (N, or F × the number of
images carrying j). Classes are served rarest first; each takes its not yet chosen images in seeded random
order, preferring images whose other labels are still under their quota and never taking one that would leave
some label with too few images for the next step. So every class gets at least its quota (exactly it, unless
its images always carry another label that forces more); per-class numbers count images carrying the label,
and a multi-label query counts for each of its labels. Training images are then drawn from the non-queries the
same way, with quotas from each class's non-query count. For single-label data this is a plain random draw
per class. A class that would end up without a query, a training image or a database image (e.g. a tag that
occurs in one image) is an error, never a silent empty class.

Open set (--unseen-classes N, or NAME,NAME,...): N classes chosen with --seed (or the named ones) are kept
out of train.txt: every training image carrying one of them is removed from it (with
--database-excludes-train it goes to the database instead, so no image is lost), while database.txt and
test.txt keep them. Training then never sees those classes, and the evaluation reports mAP on the queries of
seen and of unseen classes separately; it finds the unseen classes from train.txt itself (the label columns no
training line has), so no side file is written or needed. A seen class left without a training image (in
multi-label data its images may all carry an unseen label too) is an error naming it.

Before writing, the split is checked: queries and database are disjoint, and train ⊆ database (or, with
--database-excludes-train, train ∩ database = ∅); the counts are printed.

Images: every image is opened and decoded with PIL, as training will (JPEGs at 1/8 scale, in a few threads).
An unreadable image, a CSV path that does not exist under --root, and a path containing whitespace (the list
format cannot hold it; rename the file) are an error naming the first of them; with --skip-bad-images they are
left out and reported (count and the first few).

Output in --out (default data/custom, the `custom` preset's default --list-dir): train.txt, database.txt,
test.txt (HashNet format `relative/path l1 ... lC`, each sorted by path, written atomically) and classes.txt
(the class names, one per line, in label-column order). The same inputs and seed give byte-identical files.
Re-running with an identical result changes nothing; an --out that holds different lists is not overwritten
unless --force is given. A table of per-class counts (train, database, query, total) is printed.
Every bad input is a one-line `error: ...` with exit status 2.
"""
import argparse
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.cli import add_flag  # noqa: E402
from utils.data.custom_lists import CLASSES_FILE, DEFAULT_QUERY_FRACTION, DEFAULT_TRAIN_FRACTION, build  # noqa: E402
from utils.errors import UserError, cli_entry  # noqa: E402

CSV_ONLY = ("root", "delimiter", "path_column", "label_column", "label_separator")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("input (one of)")
    src.add_argument("--images", help="class-folder tree DIR/<class>/<image> (single-label); DIR is the --data-path")
    src.add_argument("--csv", dest="csv_file", metavar="FILE", help="CSV of image paths and tags (multi-label)")
    src.add_argument("--root", default=None, help="folder the CSV paths are relative to (default: the CSV's folder)")
    src.add_argument("--delimiter", default=None, help="CSV field separator (default ','; 'tab' for a TSV)")
    add_flag(src, "--path-column", default=None,
             help="CSV column holding the image path (default 'path')")
    add_flag(src, "--label-column", default=None,
             help="CSV column holding the tags (default 'labels')")
    add_flag(src, "--label-separator", default=None,
             help="separator between tags in the label column (default '|')")
    sp = p.add_argument_group("split (per class)")
    add_flag(sp, "--query-per-class", type=int, default=None,
             help="queries (test.txt) per class")
    add_flag(sp, "--query-fraction", type=float, default=None,
             help=f"fraction of each class used as queries (default {DEFAULT_QUERY_FRACTION})")
    add_flag(sp, "--train-per-class", type=int, default=None,
             help="training images per class")
    add_flag(sp, "--train-fraction", type=float, default=None,
             help=f"fraction of each class's non-queries used for training (default {DEFAULT_TRAIN_FRACTION})")
    add_flag(sp, "--database-excludes-train", action="store_true",
             help="leave the training images out of the database (default: train ⊆ database)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    add_flag(sp, "--unseen-classes", default=None, metavar="N|A,B",
             help="open set: keep N classes (seeded choice) or the named ones out of train.txt; database and "
                  "queries keep them")
    add_flag(sp, "--drop-small-classes", action="store_true",
             help="leave out classes with fewer images than the split needs instead of stopping")
    add_flag(p, "--skip-bad-images", action="store_true",
             help="leave out unreadable or missing images and paths with whitespace (reported) "
                  "instead of stopping")
    p.add_argument("--out", default="data/custom", help="list folder (default data/custom)")
    p.add_argument("--force", action="store_true", help="overwrite different lists already in --out")
    return p.parse_args(argv)


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    if args.images is not None and args.csv_file is not None:
        raise UserError("--images and --csv are mutually exclusive; give one")
    if args.images is not None:
        given = [f"--{k.replace('_', '-')}" for k in CSV_ONLY if getattr(args, k) is not None]
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise UserError(f"{', '.join(given)} {verb} to --csv only, not to --images")
    csv_opts = {k: getattr(args, k) for k in CSV_ONLY if getattr(args, k) is not None}
    s = build(args.out, images=args.images, csv_file=args.csv_file, query_per_class=args.query_per_class,
              query_fraction=args.query_fraction, train_per_class=args.train_per_class,
              train_fraction=args.train_fraction, database_excludes_train=args.database_excludes_train,
              seed=args.seed, skip_bad_images=args.skip_bad_images, drop_small_classes=args.drop_small_classes,
              force=args.force, say=lambda text: print(text, flush=True), unseen_classes=args.unseen_classes,
              **csv_opts)
    print(s["table"])
    if s["multi_label"]:
        print("(multi-label: a class row counts the images carrying that label; the last row counts images)")
    if len(s["classes"]) == 1:
        print("note: only one class, so every database image is relevant to every query (mAP is 1)")
    c = s["counts"]
    what = {"unchanged": "unchanged (identical lists already there)", "wrote": "wrote",
            "overwrote": "overwrote (--force)"}[s["status"]]
    print(f"{args.out}: {what}: train.txt {c['train']}, database.txt {c['database']}, test.txt {c['test']}, "
          f"{CLASSES_FILE} {len(s['classes'])} classes")
    print(f"train with: python main_single_gpu.py --dataset custom --data-path {shlex.quote(s['root'])} "
          f"--list-dir {shlex.quote(args.out)} ...")


if __name__ == "__main__":
    main()
