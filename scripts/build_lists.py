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
import concurrent.futures
import csv
import io
import os
import posixpath
import shlex
import sys
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.errors import UserError, cli_entry  # noqa: E402
from utils.fileio import check_writable_dir, write_text  # noqa: E402
from utils.data.images import IMAGE_EXTENSIONS, check_image  # noqa: E402
from utils.data.lists import LIST_NAMES, format_list, write_list  # noqa: E402
from utils.data.split_check import check_split  # noqa: E402

DEFAULT_QUERY_FRACTION = 0.1
DEFAULT_TRAIN_FRACTION = 0.5
CLASSES_FILE = "classes.txt"
SHOW = 5  # names shown in a report of skipped or ignored files
CSV_ONLY = ("root", "delimiter", "path_column", "label_column", "label_separator")


def _short(exc, limit=150):
    """An exception's text on one line (messages must stay one line), cut to `limit` characters."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _has_space(text):
    return any(c.isspace() for c in text)


def _plural(n, word, many=None):
    return f"{n} {word if n == 1 else (many or word + 's')}"


@dataclass
class Item:
    path: str  # relative to the image root, '/'-separated, as written to the lists
    tags: tuple  # class names
    where: str  # for messages: the file, or CSV file:line


# ------------------------------------------------------------------------------------------- input
def find_images(images_dir, skip_dirs=()):
    """Enumerate `images_dir/<class>/...` in sorted order: (classes, items, stats)."""
    if not os.path.isdir(images_dir):
        raise UserError(f"--images {images_dir}: directory not found; pass the folder holding one sub-folder per class")
    skip = {os.path.realpath(d) for d in skip_dirs}
    stats = {"non_image": 0, "outside": 0, "hidden": 0, "non_image_examples": []}
    classes, items = [], []
    for entry in _scandir(images_dir):
        if entry.name.startswith("."):
            stats["hidden"] += 1
        elif _is_dir(entry):
            if os.path.realpath(entry.path) in skip:
                continue
            classes.append(entry.name)
            _walk(entry.path, entry.name, entry.name, frozenset(), items, stats, skip)
        else:
            stats["outside"] += 1
    if not classes:
        raise UserError(f"--images {images_dir}: no class folders in it (found {_plural(stats['outside'], 'file')} "
                        f"directly in it); expected {images_dir}/<class>/<image>, or use --csv for other layouts")
    if not items:
        raise UserError(f"--images {images_dir}: no images found in its {_plural(len(classes), 'class folder')} "
                        f"(ignored {_plural(stats['non_image'], 'non-image file')}); images are files named "
                        f"*{', *'.join(IMAGE_EXTENSIONS)} (any case)")
    return classes, items, stats


def _scandir(path):
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise UserError(f"{path}: cannot read the directory ({exc.strerror or _short(exc)})")


def _is_dir(entry):
    try:
        return entry.is_dir()  # follows symbolic links
    except OSError:
        return False


def _walk(top, rel, cls, ancestors, items, stats, skip):
    real = os.path.realpath(top)
    if real in ancestors:  # a symbolic link back up the tree
        return
    ancestors = ancestors | {real}
    for entry in _scandir(top):
        path = f"{rel}/{entry.name}"
        if entry.name.startswith("."):
            stats["hidden"] += 1
        elif _is_dir(entry):
            if os.path.realpath(entry.path) not in skip:
                _walk(entry.path, path, cls, ancestors, items, stats, skip)
        elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
            items.append(Item(path, (cls,), os.path.join(top, entry.name)))
        else:
            stats["non_image"] += 1
            if len(stats["non_image_examples"]) < SHOW:
                stats["non_image_examples"].append(path)


def _delimiter(value):
    value = {"tab": "\t", "\\t": "\t"}.get(value, value)
    if len(value) != 1:
        raise UserError(f"--delimiter {value!r}: must be one character (or 'tab')")
    return value


def read_csv(csv_file, root=None, delimiter=",", path_column="path", label_column="labels", label_separator="|"):
    """Parse a CSV of image paths and tags: (root, items). Paths are normalised and relative to root."""
    if not os.path.isfile(csv_file):
        raise UserError(f"--csv {csv_file}: file not found")
    root = root if root is not None else (os.path.dirname(csv_file) or ".")
    if not os.path.isdir(root):
        raise UserError(f"--root {root}: directory not found; it must be the folder the CSV paths are relative to")
    delimiter = _delimiter(delimiter)
    if not label_separator:
        raise UserError("--label-separator must not be empty")
    if path_column == label_column:
        raise UserError(f"--path-column and --label-column are both '{path_column}'; they must differ")
    try:
        with open(csv_file, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{csv_file}: cannot read the CSV ({type(exc).__name__}: {_short(exc)}); save it as UTF-8 text")
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    items, seen = [], {}
    try:
        header = next(reader, None)
        while header is not None and not any(h.strip() for h in header):
            header = next(reader, None)
        if header is None:
            raise UserError(f"{csv_file}: the CSV is empty; expected a header line with the columns "
                            f"'{path_column}' and '{label_column}', then one row per image")
        header = [h.strip() for h in header]
        for flag, name in (("--path-column", path_column), ("--label-column", label_column)):
            if name not in header:
                hint = f"; is --delimiter {delimiter!r} right?" if len(header) == 1 else f"; choose one with {flag}"
                raise UserError(f"{csv_file}: no column '{name}' ({flag}); its columns are: "
                                f"{', '.join(repr(h) for h in header)}{hint}")
        pi, li = header.index(path_column), header.index(label_column)
        for row in reader:
            lineno = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            where = f"{csv_file}:{lineno}"
            raw = row[pi].strip() if pi < len(row) else ""
            path = _csv_path(raw, root, where, path_column)
            tags = [t.strip() for t in (row[li] if li < len(row) else "").split(label_separator)]
            tags = sorted({t for t in tags if t})
            if not tags:
                raise UserError(f"{where}: no labels for '{raw}' in column '{label_column}'; every row needs at "
                                f"least one tag (tags separated by '{label_separator}')")
            bad = next((t for t in tags if "\n" in t or "\r" in t), None)
            if bad is not None:
                raise UserError(f"{where}: tag {bad!r} contains a line break; classes.txt holds one name per line")
            if path in seen:
                raise UserError(f"{where}: path '{path}' is already on line {seen[path]}; each image may appear "
                                "once (give it all its tags on one row)")
            seen[path] = lineno
            items.append(Item(path, tuple(tags), where))
    except csv.Error as exc:
        raise UserError(f"{csv_file}:{reader.line_num}: malformed CSV ({_short(exc)})")
    if not items:
        raise UserError(f"{csv_file}: no rows after the header; expected one row per image "
                        f"('{path_column}{delimiter}{label_column}', "
                        f"e.g. 'a/001.jpg{delimiter}cat{label_separator}dog')")
    items.sort(key=lambda it: it.path)
    return root, items


def _csv_path(raw, root, where, column):
    if not raw:
        raise UserError(f"{where}: empty path in column '{column}'")
    path = raw
    if os.path.isabs(path):
        path = os.path.relpath(path, root)
    path = posixpath.normpath(path.replace(os.sep, "/"))
    if path in (".", "") or path == ".." or path.startswith("../"):
        raise UserError(f"{where}: path '{raw}' is outside --root {root}; paths must lead to files under --root")
    return path


# ------------------------------------------------------------------------------------------ images
def screen_images(items, root, skip_bad, csv_mode=False, workers=None, say=None):
    """Drop or refuse paths the lists cannot hold and files PIL cannot read.

    Returns (kept items, [(item, short reason, full message)]); without skip_bad the first bad one is a UserError.
    """
    bad, rest = [], []
    for it in items:
        try:
            it.path.encode("utf-8")
            ok_name = True
        except UnicodeEncodeError:
            ok_name = False
        if not ok_name:
            bad.append((it, "not UTF-8", f"the name {it.path!r} is not valid UTF-8; rename the file"))
        elif _has_space(it.path):
            bad.append((it, "whitespace", f"path '{it.path}' contains whitespace, which the list format cannot "
                                          "hold; rename the file (e.g. spaces to _)"))
        else:
            rest.append(it)
    _refuse(bad, skip_bad)
    if say and len(rest) > 200:
        say(f"checking {len(rest)} images with PIL ...")
    workers = workers or min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        reasons = list(pool.map(check_image, [os.path.join(root, it.path) for it in rest]))
    for it, why in zip(rest, reasons):
        if why == "file not found":
            where = f"under --root {root}" if csv_mode else "(a broken link?)"
            bad.append((it, "not found", f"'{it.path}' not found {where}; fix the path or remove the row"
                        if csv_mode else f"file not found {where}"))
        elif why is not None:
            name = f"'{it.path}': " if csv_mode else ""
            bad.append((it, "unreadable", f"{name}{why}; replace or delete the file"))
    _refuse(bad, skip_bad)
    bad_ids = {id(it) for it, _, _ in bad}
    return [it for it in items if id(it) not in bad_ids], bad


def _refuse(bad, skip_bad):
    if bad and not skip_bad:
        it, _, message = bad[0]
        more = f" ({len(bad)} such files)" if len(bad) > 1 else ""
        raise UserError(f"{it.where}: {message}{more}; or pass --skip-bad-images to leave such files out")


# ------------------------------------------------------------------------------------------- split
@dataclass(frozen=True)
class Plan:
    """How many queries and training images a class gets (per-class counts or fractions)."""

    query_per_class: int = None
    query_fraction: float = None
    train_per_class: int = None
    train_fraction: float = None
    excludes_train: bool = False

    def __post_init__(self):
        if (self.query_per_class is None) == (self.query_fraction is None):
            raise ValueError("give exactly one of query_per_class and query_fraction")
        if (self.train_per_class is None) == (self.train_fraction is None):
            raise ValueError("give exactly one of train_per_class and train_fraction")

    def queries(self, n):
        if self.query_per_class is not None:
            return self.query_per_class
        return max(1, int(self.query_fraction * n + 0.5))

    def training(self, rest):
        if self.train_per_class is not None:
            return self.train_per_class
        return max(1, int(self.train_fraction * rest + 0.5))

    def rest_ok(self, rest):
        """Can `rest` non-query images of a class give its training images and a non-empty database?"""
        return rest >= 1 and self.training(rest) <= rest - (1 if self.excludes_train else 0)

    def ok(self, n):
        return self.rest_ok(n - self.queries(n))

    def min_images(self):
        n = 1
        while not self.ok(n):
            n += 1
        return n

    def min_rest(self):
        r = 1
        while not self.rest_ok(r):
            r += 1
        return r

    def describe(self, defaults=()):
        def flag(name, value):
            return f"--{name} {value}" + (" (default)" if name in defaults else "")

        q = (flag("query-per-class", self.query_per_class) if self.query_per_class is not None
             else flag("query-fraction", self.query_fraction))
        t = (flag("train-per-class", self.train_per_class) if self.train_per_class is not None
             else flag("train-fraction", self.train_fraction))
        return f"{q} and {t}" + (" with --database-excludes-train" if self.excludes_train else "")

    def breakdown(self, n):
        q = self.queries(n)
        t = self.training(n - q)
        qs = _plural(q, "query", "queries")
        if self.excludes_train:
            return f"{qs}, {_plural(t, 'training image')} and {n - q - t} for the database"
        return f"{qs} and a database of {n - q} holding the {_plural(t, 'training image')}"


def check_class_sizes(classes, counts, plan, kind="class", defaults=()):
    """UserError naming the first class with fewer images than `plan` needs."""
    need = plan.min_images()
    for name, n in zip(classes, counts):
        if n < need:
            raise UserError(f"{kind} '{name}' has {_plural(int(n), 'image')}; {plan.describe(defaults)} need at least "
                            f"{need} per class ({plan.breakdown(need)}); add images, lower the numbers, or pass "
                            "--drop-small-classes to leave it out")


def split(labels, plan, seed=0, classes=None, kind="class", defaults=()):
    """Seeded stratified split of a 0/1 label matrix (N × C): (test, train, database) sorted index arrays.

    Greedy per-label quotas, rarest class first (see the module docstring); single-label data gets an exact
    per-class random draw.
    """
    labels = np.asarray(labels, dtype=np.uint8)
    n, num_classes = labels.shape
    classes = list(classes) if classes is not None else [str(j) for j in range(num_classes)]
    counts = labels.sum(0).astype(np.int64)
    check_class_sizes(classes, counts, plan, kind, defaults)
    order = np.argsort(np.random.default_rng(seed).permutation(n), kind="stable")  # items in random order
    members = [order[labels[order, j] == 1].tolist() for j in range(num_classes)]
    item_labels = [np.flatnonzero(row).tolist() for row in labels]

    quota = [plan.queries(int(c)) for c in counts]
    cap = [int(c) - plan.min_rest() for c in counts]
    is_query, n_query = _greedy(members, item_labels, quota, cap, np.ones(n, bool), counts)
    for j in range(num_classes):
        if n_query[j] < quota[j]:
            raise UserError(f"{kind} '{classes[j]}': only {n_query[j]} of its {counts[j]} images can be queries, "
                            f"{plan.describe(defaults)} ask for {quota[j]}: they also carry labels that need "
                            "their images for training and the database; lower the numbers")
    rest = [int(c) - q for c, q in zip(counts, n_query)]
    quota = [plan.training(r) for r in rest]
    cap = [r - (1 if plan.excludes_train else 0) for r in rest]
    is_train, n_train = _greedy(members, item_labels, quota, cap, ~is_query, rest)
    for j in range(num_classes):
        if n_train[j] < quota[j]:
            what = "no training image (it would be a label unseen in training)" if n_train[j] == 0 else \
                f"only {n_train[j]} training images"
            raise UserError(f"{kind} '{classes[j]}' would get {what}; {plan.describe(defaults)} ask for "
                            f"{quota[j]} of its {rest[j]} non-queries, but they also carry labels that need "
                            "them in the database; lower the numbers")
    in_database = ~is_query & ~is_train if plan.excludes_train else ~is_query
    test, train, database = (np.flatnonzero(m) for m in (is_query, is_train, in_database))
    assert (labels[database].sum(0) > 0).all() and (labels[train].sum(0) > 0).all()
    return test, train, database


def _greedy(members, item_labels, quota, cap, available, counts):
    """Choose items so that class j has ≥ quota[j] (and never more than cap[j]) chosen items, rarest first."""
    chosen = np.zeros(len(item_labels), bool)
    count = [0] * len(members)
    for j in sorted(range(len(members)), key=lambda c: (counts[c], c)):
        if count[j] >= quota[j]:
            continue
        candidates = [i for i in members[j] if available[i]]
        for soft in (True, False):  # first only images whose labels all stay within quota, then within cap
            for i in candidates:
                if count[j] >= quota[j]:
                    break
                if chosen[i]:
                    continue
                labs = item_labels[i]
                if any(count[c] >= cap[c] for c in labs) or (soft and any(count[c] >= quota[c] for c in labs)):
                    continue
                chosen[i] = True
                for c in labs:
                    count[c] += 1
            if count[j] >= quota[j]:
                break
    return chosen, count


# ------------------------------------------------------------------------------------------ output
def list_texts(classes, paths, labels, splits):
    """{file name: exact text} of the three lists and classes.txt."""
    texts = {f"{name}.txt": format_list([paths[i] for i in splits[name]], labels[splits[name]])
             for name in LIST_NAMES}
    texts[CLASSES_FILE] = "".join(c + "\n" for c in classes)
    return texts


def write_outputs(out, classes, paths, labels, splits, force=False):
    """Write the lists and classes.txt atomically; 'unchanged', 'wrote' or 'overwrote'. Different existing
    lists are a UserError unless force."""
    texts = list_texts(classes, paths, labels, splits)
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out}: exists and is not a directory; choose another --out")
    state = {}
    for name, text in texts.items():
        path = os.path.join(out, name)
        if not os.path.exists(path):
            state[name] = "missing"
            continue
        try:
            with open(path, "rb") as f:
                state[name] = "same" if f.read() == text.encode("utf-8") else "different"
        except OSError:
            state[name] = "different"
    different = [name for name, s in state.items() if s == "different"]
    if different and not force:
        raise UserError(f"--out {out} already holds different lists ({', '.join(different)} differ); pass --force "
                        "to overwrite them, or choose another --out")
    if all(s == "same" for s in state.values()):
        return "unchanged"
    check_writable_dir(out, "--out")
    for name in LIST_NAMES:
        if state[f"{name}.txt"] != "same":
            idx = splits[name]
            write_list(os.path.join(out, f"{name}.txt"), [paths[i] for i in idx], labels[idx])
    if state[CLASSES_FILE] != "same":
        write_text(os.path.join(out, CLASSES_FILE), texts[CLASSES_FILE])
    return "overwrote" if different else "wrote"


def format_table(classes, labels, splits):
    """Per-class counts per split, then the number of images per split."""
    rows = [("class", "train", "database", "query", "total")]
    per = {name: labels[splits[name]].sum(0) for name in LIST_NAMES}
    total = labels.sum(0)
    for j, name in enumerate(classes):
        rows.append((name, per["train"][j], per["database"][j], per["test"][j], total[j]))
    rows.append(("total (images)", len(splits["train"]), len(splits["database"]), len(splits["test"]), len(labels)))
    rows = [tuple(str(v) for v in row) for row in rows]
    widths = [max(len(row[k]) for row in rows) for k in range(5)]
    lines = ["  ".join([row[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(row[1:], widths[1:])]) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- build
def _drop_small(classes, items, plan, csv_mode):
    """Leave out classes below the minimum: (classes, items, dropped [(name, count)], rows left without a tag)."""
    need = plan.min_images()
    counts = {c: 0 for c in classes}
    for it in items:
        for t in it.tags:
            counts[t] += 1
    small = {c for c in classes if counts[c] < need}
    if not small:
        return classes, items, [], 0
    kept, orphans = [], 0
    for it in items:
        tags = tuple(t for t in it.tags if t not in small)
        if tags:
            kept.append(Item(it.path, tags, it.where))
        else:
            orphans += 1
    remaining = [c for c in classes if c not in small]
    if not remaining:
        raise UserError(f"no {'tag' if csv_mode else 'class'} has the {need} images {plan.describe()} need per "
                        "class; add images or lower the numbers")
    return remaining, kept, [(c, counts[c]) for c in classes if c in small], orphans


def choose_unseen(spec, classes, seed, kind="class"):
    """--unseen-classes: N (a seeded choice of N classes) or comma-separated names → sorted column indices."""
    if spec is None or str(spec).strip() == "":
        return []
    spec = str(spec).strip()
    if spec.isdigit():
        n = int(spec)
        if not 1 <= n < len(classes):
            raise UserError(f"--unseen-classes {n}: choose between 1 and {len(classes) - 1} of the "
                            f"{len(classes)} {kind}es (at least one must stay seen)")
        return sorted(int(j) for j in np.random.default_rng([seed, 1]).choice(len(classes), n, replace=False))
    names = [x.strip() for x in spec.split(",") if x.strip()]
    column = {c: j for j, c in enumerate(classes)}
    unknown = [x for x in names if x not in column]
    if unknown:
        raise UserError(f"--unseen-classes: no {kind} named {unknown[0]!r} (the {kind}es are "
                        f"{', '.join(classes[:10])}{' ...' if len(classes) > 10 else ''})")
    chosen = sorted({column[x] for x in names})
    if len(chosen) >= len(classes):
        raise UserError(f"--unseen-classes names all {len(classes)} {kind}es; at least one must stay seen")
    return chosen


def hold_out(labels, train, database, unseen, excludes_train, classes, kind="class"):
    """Remove every training image carrying an unseen class → (train, database, removed count)."""
    if not unseen:
        return train, database, 0
    held = labels[train][:, unseen].any(axis=1)
    removed = train[held]
    train = train[~held]
    if excludes_train:  # those images were only in train.txt: give them to the database
        database = np.sort(np.concatenate([database, removed]))
    seen = [j for j in range(labels.shape[1]) if j not in set(unseen)]
    empty = [classes[j] for j in seen if labels[train, j].sum() == 0]
    if empty:
        raise UserError(f"--unseen-classes: seen {kind} '{empty[0]}' has no training image left (its images all "
                        "carry an unseen class too); choose other unseen classes")
    return train, database, len(removed)


def build(out, images=None, csv_file=None, root=None, delimiter=",", path_column="path", label_column="labels",
          label_separator="|", query_per_class=None, query_fraction=None, train_per_class=None, train_fraction=None,
          database_excludes_train=False, seed=0, skip_bad_images=False, drop_small_classes=False, force=False,
          say=None, unseen_classes=None):
    """Collect, check, split and write; return a summary dict. `say(text)` receives progress lines."""
    say = say or (lambda text: None)
    if (images is None) == (csv_file is None):
        raise UserError("pass exactly one of --images DIR (class folders) and --csv FILE" +
                        (" (not both)" if images is not None else ""))
    for a, va, b, vb in (("query-per-class", query_per_class, "query-fraction", query_fraction),
                         ("train-per-class", train_per_class, "train-fraction", train_fraction)):
        if va is not None and vb is not None:
            raise UserError(f"--{a} and --{b} are mutually exclusive; give one")
    defaults = []
    if query_per_class is None and query_fraction is None:
        query_fraction = DEFAULT_QUERY_FRACTION
        defaults.append("query-fraction")
    if train_per_class is None and train_fraction is None:
        train_fraction = DEFAULT_TRAIN_FRACTION
        defaults.append("train-fraction")
    for name, value in (("query-per-class", query_per_class), ("train-per-class", train_per_class)):
        if value is not None and value < 1:
            raise UserError(f"--{name} must be at least 1, got {value}")
    if query_fraction is not None and not 0 < query_fraction < 1:
        raise UserError(f"--query-fraction must be between 0 and 1 (exclusive), got {query_fraction}")
    if train_fraction is not None and not (0 < train_fraction < 1 if database_excludes_train else
                                           0 < train_fraction <= 1):
        bound = "below 1 with --database-excludes-train (the database needs images)" if database_excludes_train \
            else "at most 1"
        raise UserError(f"--train-fraction must be above 0 and {bound}, got {train_fraction}")
    if seed < 0:
        raise UserError(f"--seed must be ≥ 0, got {seed}")
    plan = Plan(query_per_class, query_fraction, train_per_class, train_fraction, bool(database_excludes_train))
    csv_mode = csv_file is not None
    kind = "tag" if csv_mode else "class"

    summary = {"ignored": {"non_image": 0, "outside": 0, "hidden": 0, "non_image_examples": []}}
    if csv_mode:
        root, items = read_csv(csv_file, root, delimiter, path_column, label_column, label_separator)
        say(f"read {_plural(len(items), 'row')} from {csv_file}; paths relative to {root}")
        classes = None
    else:
        root = images
        classes, items, summary["ignored"] = find_images(images, skip_dirs=[out])
        ign = summary["ignored"]
        notes = [_plural(ign["non_image"], "non-image file")]
        if ign["non_image_examples"]:
            notes[0] += f" (e.g. {', '.join(ign['non_image_examples'][:3])})"
        if ign["outside"]:
            notes.append(f"{_plural(ign['outside'], 'file')} directly in {images} (not in a class folder)")
        if ign["hidden"]:
            notes.append(_plural(ign["hidden"], "hidden entry", "hidden entries"))
        say(f"found {_plural(len(items), 'image')} in {_plural(len(classes), 'class folder')} under {images}; "
            f"ignored {', '.join(notes)}")
    items, bad = screen_images(items, root, skip_bad_images, csv_mode, say=say)
    summary["bad"] = [(it.where, message) for it, _, message in bad]
    if bad:
        shown = ", ".join((f"{it.where} '{it.path}'" if csv_mode else it.path) + f" ({short})"
                          for it, short, _ in bad[:SHOW])
        say(f"skipped {_plural(len(bad), 'bad image')} (--skip-bad-images): {shown}"
            + (" ..." if len(bad) > SHOW else ""))
    if not items:
        raise UserError(f"no usable image left after skipping {_plural(len(bad), 'bad image')}")
    if classes is None:
        classes = sorted({t for it in items for t in it.tags})
    summary["dropped"], summary["orphans"] = [], 0
    if drop_small_classes:
        classes, items, summary["dropped"], summary["orphans"] = _drop_small(classes, items, plan, csv_mode)
        if summary["dropped"]:
            names = ", ".join(f"{c} ({n})" for c, n in summary["dropped"][:10])
            extra = f"; {_plural(summary['orphans'], 'image')} left without a tag left out" if csv_mode else ""
            say(f"left out {_plural(len(summary['dropped']), kind)} with fewer than {plan.min_images()} images "
                f"(--drop-small-classes): {names}{' ...' if len(summary['dropped']) > 10 else ''}{extra}")
    column = {c: j for j, c in enumerate(classes)}
    paths = [it.path for it in items]
    labels = np.zeros((len(items), len(classes)), np.uint8)
    for i, it in enumerate(items):
        labels[i, [column[t] for t in it.tags]] = 1
    multi = bool((labels.sum(1) > 1).any())
    say(f"split (seed {seed}): {plan.describe(defaults)}; training images "
        + ("are not in the database" if plan.excludes_train else "are drawn from the database")
        + ("; multi-label: greedy per-label quotas, rarest label first" if multi else ""))
    test, train, database = split(labels, plan, seed, classes, kind, defaults)
    unseen = choose_unseen(unseen_classes, classes, seed, kind)
    train, database, n_held = hold_out(labels, train, database, unseen, plan.excludes_train, classes, kind)
    if unseen:
        say(f"open set: {_plural(len(unseen), kind)} kept out of train.txt ({', '.join(classes[j] for j in unseen)}): "
            f"{_plural(n_held, 'training image')} carrying them removed"
            + (" and given to the database" if plan.excludes_train else "")
            + "; database.txt and test.txt keep them")
    summary["checked"] = check_split([paths[i] for i in train], [paths[i] for i in database],
                                     [paths[i] for i in test], train_in_database=not plan.excludes_train)
    say(summary["checked"])
    summary["unseen_classes"] = [classes[j] for j in unseen]
    splits = {"train": train, "database": database, "test": test}
    summary["table"] = format_table(classes, labels, splits)
    summary["status"] = write_outputs(out, classes, paths, labels, splits, force)
    summary.update(classes=classes, paths=paths, labels=labels, splits=splits, multi_label=multi, root=root,
                   out=out, plan=plan, counts={name: len(idx) for name, idx in splits.items()})
    return summary


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("input (one of)")
    src.add_argument("--images", help="class-folder tree DIR/<class>/<image> (single-label); DIR is the --data-path")
    src.add_argument("--csv", dest="csv_file", metavar="FILE", help="CSV of image paths and tags (multi-label)")
    src.add_argument("--root", default=None, help="folder the CSV paths are relative to (default: the CSV's folder)")
    src.add_argument("--delimiter", default=None, help="CSV field separator (default ','; 'tab' for a TSV)")
    src.add_argument("--path-column", "--path_column", dest="path_column", default=None,
                     help="CSV column holding the image path (default 'path')")
    src.add_argument("--label-column", "--label_column", dest="label_column", default=None,
                     help="CSV column holding the tags (default 'labels')")
    src.add_argument("--label-separator", "--label_separator", dest="label_separator", default=None,
                     help="separator between tags in the label column (default '|')")
    sp = p.add_argument_group("split (per class)")
    sp.add_argument("--query-per-class", "--query_per_class", dest="query_per_class", type=int, default=None,
                    help="queries (test.txt) per class")
    sp.add_argument("--query-fraction", "--query_fraction", dest="query_fraction", type=float, default=None,
                    help=f"fraction of each class used as queries (default {DEFAULT_QUERY_FRACTION})")
    sp.add_argument("--train-per-class", "--train_per_class", dest="train_per_class", type=int, default=None,
                    help="training images per class")
    sp.add_argument("--train-fraction", "--train_fraction", dest="train_fraction", type=float, default=None,
                    help=f"fraction of each class's non-queries used for training (default {DEFAULT_TRAIN_FRACTION})")
    sp.add_argument("--database-excludes-train", "--database_excludes_train", dest="database_excludes_train",
                    action="store_true",
                    help="leave the training images out of the database (default: train ⊆ database)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    sp.add_argument("--unseen-classes", "--unseen_classes", dest="unseen_classes", default=None, metavar="N|A,B",
                    help="open set: keep N classes (seeded choice) or the named ones out of train.txt; database and "
                         "queries keep them")
    sp.add_argument("--drop-small-classes", "--drop_small_classes", dest="drop_small_classes", action="store_true",
                    help="leave out classes with fewer images than the split needs instead of stopping")
    p.add_argument("--skip-bad-images", "--skip_bad_images", dest="skip_bad_images", action="store_true",
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
