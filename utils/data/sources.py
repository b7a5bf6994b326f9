"""Where a custom data set's items come from, for scripts/build_lists.py: a class-folder tree or a CSV of
paths and tags, and the screening of their images (its --help text describes the rules).

    classes, items, stats = find_images("photos")        # photos/<class>/.../<image>: single-label items
    root, items = read_csv("labels.csv")                 # path,labels rows (a.jpg,cat|dog): multi-label items
    items, bad = screen_images(items, root, skip_bad=False)   # UserError on the first bad one unless skip_bad
    classes, items, dropped, orphans = drop_small(classes, items, plan, csv_mode)

An `Item` is a relative '/'-separated path (as the lists hold it), its tags (class names) and where it came
from (the file, or the CSV's file:line) for messages. Every bad input is a UserError naming the file (and
line) and what to do. Images are decoded with utils/data/images.py's `check_image` in a few threads.
"""
import concurrent.futures
import csv
import io
import os
import posixpath
from dataclasses import dataclass

from utils.data.images import IMAGE_EXTENSIONS, check_image
from utils.data.split import plural
from utils.errors import UserError, one_line

SHOW = 5  # names shown in a report of skipped or ignored files


def _has_space(text):
    return any(c.isspace() for c in text)


@dataclass
class Item:
    path: str  # relative to the image root, '/'-separated, as written to the lists
    tags: tuple  # class names
    where: str  # for messages: the file, or CSV file:line


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
        raise UserError(f"--images {images_dir}: no class folders in it (found {plural(stats['outside'], 'file')} "
                        f"directly in it); expected {images_dir}/<class>/<image>, or use --csv for other layouts")
    if not items:
        raise UserError(f"--images {images_dir}: no images found in its {plural(len(classes), 'class folder')} "
                        f"(ignored {plural(stats['non_image'], 'non-image file')}); images are files named "
                        f"*{', *'.join(IMAGE_EXTENSIONS)} (any case)")
    return classes, items, stats


def _scandir(path):
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise UserError(f"{path}: cannot read the directory ({exc.strerror or one_line(exc)})")


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
        raise UserError(f"{csv_file}: cannot read the CSV ({type(exc).__name__}: {one_line(exc)}); "
                        "save it as UTF-8 text")
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
        raise UserError(f"{csv_file}:{reader.line_num}: malformed CSV ({one_line(exc)})")
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


def drop_small(classes, items, plan, csv_mode):
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
